"""Quicklooks: a PNG panel and an animated GIF with one frame per lead time (+ the observation)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nowcast.data.synthetic import synthetic_event
from nowcast.io import Provenance, forecast_dataset
from nowcast.io.quicklook import forecast_field, rain_colour_scale, write_gif, write_png


@pytest.fixture(scope="module")
def forecast():
    store = synthetic_event(n_frames=4, height=32, width=32)
    rain = np.stack([store.rain_rate.values[1:4], 2 * store.rain_rate.values[1:4]])  # (2, 3, H, W)
    prov = Provenance({"model": "test"}, "store", store.time.values[:4])
    return forecast_dataset(np.nan_to_num(rain), store.time.values[3], np.timedelta64(5, "m"), store, prov,
                            np.isfinite(store.rain_rate.values).all(axis=0))


def test_png_panel(forecast, tmp_path):
    path = write_png(forecast, tmp_path / "q.png", last_observed=forecast.rain_rate.values[0, 0])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_gif_has_observation_plus_every_lead(forecast, tmp_path):
    path = write_gif(forecast, tmp_path / "q.gif", last_observed=forecast.rain_rate.values[0, 0])
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 1 + forecast.sizes["lead_time"]


def test_field_choice(forecast):
    mean = forecast_field(forecast, "mean").values
    np.testing.assert_allclose(mean, 1.5 * forecast.rain_rate.values[0], equal_nan=True)
    np.testing.assert_array_equal(forecast_field(forecast, "member1").values, forecast.rain_rate.values[1])
    with pytest.raises(ValueError, match="mean"):
        forecast_field(forecast, "median")


def test_colour_scale_marks_dry_and_no_coverage():
    cmap, norm = rain_colour_scale()
    assert cmap(norm(0.0)) == (1.0, 1.0, 1.0, 1.0)  # dry is white
    no_coverage = cmap(norm(np.ma.masked_invalid([np.nan])))[0]
    assert tuple(no_coverage) != cmap(norm(0.0))  # no coverage differs from dry
    assert cmap(norm(200.0)) == cmap(norm(100.0))  # beyond the top bound: the top colour
