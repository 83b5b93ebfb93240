"""Quicklooks: a PNG panel and an animated GIF with one frame per lead time (+ the observation)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from nowcast.data.synthetic import synthetic_event
from nowcast.io import Provenance, forecast_dataset
from nowcast.io.quicklook import (
    field_member,
    forecast_field,
    quicklook_figure,
    rain_colour_scale,
    regular_leads,
    write_gif,
    write_png,
)


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


def test_panels_say_lead_and_valid_time_on_km_axes_with_a_probability_row(forecast):
    fig = quicklook_figure(forecast, last_observed=forecast.rain_rate.values[0, 0])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    issue = np.datetime64(forecast.forecast_reference_time.values, "m")
    valid = [f"{str(issue + np.timedelta64(5 * k, 'm'))[11:]}Z" for k in (1, 2, 3)]
    assert titles[:4] == [f"observed {str(issue)[11:]}Z"] + [f"+{5 * k} min, valid {v}"
                                                             for k, v in zip((1, 2, 3), valid, strict=True)]
    assert titles[4:] == [f"P(R ≥ 1 mm/h), +{5 * k} min" for k in (1, 2, 3)]  # 2 members: an ensemble
    assert fig.axes[0].get_xlabel() == "x (km)"
    assert "test: ensemble mean of 2 members" in fig.get_suptitle()
    one = quicklook_figure(forecast.isel(member=[0]))
    assert not [ax.get_title() for ax in one.axes if ax.get_title().startswith("P(")]


def test_leads_are_regularly_spaced_and_end_at_the_last():
    assert regular_leads(12) == [1, 3, 5, 7, 9, 11]
    assert regular_leads(3) == [0, 1, 2]
    assert regular_leads(10) == [1, 3, 5, 7, 9]


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


@pytest.mark.parametrize("field, members, expected", [
    ("mean", 1, None), ("member", 2, 0), ("member1", 2, 1), ("member01", 2, 1),
    ("member2", 2, "not a member of a forecast of 2 member"), ("member-1", 2, "'mean' or 'member<i>'"),
    ("member 1", 2, "'mean' or 'member<i>'"), ("Mean", 2, "'mean' or 'member<i>'"),
])
def test_field_member(field, members, expected):
    if expected is None or isinstance(expected, int):
        assert field_member(field, members) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            field_member(field, members)


def test_colour_scale_marks_dry_and_no_coverage():
    cmap, norm = rain_colour_scale()
    assert cmap(norm(0.0)) == (1.0, 1.0, 1.0, 1.0)  # dry is white
    no_coverage = cmap(norm(np.ma.masked_invalid([np.nan])))[0]
    assert tuple(no_coverage) != cmap(norm(0.0))  # no coverage differs from dry
    assert cmap(norm(200.0)) == cmap(norm(100.0))  # beyond the top bound: the top colour


def test_quicklooks_appear_whole_or_not_at_all(forecast, tmp_path, monkeypatch):
    """Drawn under a temporary name and renamed: a drawing that fails half way (a full disk) leaves
    no image under the final name and no temporary file; a good one leaves exactly its files."""
    from nowcast.fsutil import WriteError
    from nowcast.io import quicklook

    written = quicklook.write_quicklooks(forecast, tmp_path / "f.nc", ["png", "gif"])
    assert sorted(p.name for p in written) == ["f.gif", "f.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gif", "f.png"]

    def half_written(ds, path, **kwargs):
        path.write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quicklook, "write_png", half_written)
    (tmp_path / "f.png").unlink()
    with pytest.raises(WriteError, match="cannot write .*f.png"):
        quicklook.write_quicklooks(forecast, tmp_path / "f.nc", ["png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gif"]
