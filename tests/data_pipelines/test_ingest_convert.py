"""Conversion pieces of ingest against independent references (pysteps, closed form)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from data_pipelines.importers import coarsen_mean, dbz_to_rain_rate, pixel_centres, to_rain_rate
from data_pipelines.sources import SOURCES, detect_source, get_source


def test_dbz_to_rain_rate_matches_pysteps():
    from pysteps.utils.conversion import to_rainrate

    dbz = np.array([[-32.0, 0.0, 10.0], [23.0, 40.0, np.nan]])
    ref, _ = to_rainrate(dbz.copy(), {"unit": "dBZ", "transform": "dB", "zr_a": 200.0, "zr_b": 1.6,
                                      "threshold": -32.0, "zerovalue": -32.0, "accutime": 5.0})
    ours = dbz_to_rain_rate(dbz, (200.0, 1.6))
    finite = np.isfinite(dbz)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-6)
    assert np.isnan(ours[~finite]).all()
    # closed form: 23 dBZ -> Z = 199.5 -> R ~ 1 mm/h under Marshall-Palmer
    assert dbz_to_rain_rate(np.array(10 * np.log10(200.0)), (200.0, 1.6)) == pytest.approx(1.0)


def test_accumulation_divided_by_accumulation_time():
    rate, text = to_rain_rate(np.array([[0.5, np.nan]]), {"unit": "mm", "accutime": 6}, (200.0, 1.6))
    assert rate[0, 0] == pytest.approx(5.0)  # 0.5 mm in 6 min = 5 mm/h
    assert np.isnan(rate[0, 1]) and "6 min" in text
    with pytest.raises(ValueError, match="unsupported unit"):
        to_rain_rate(np.zeros((1, 1)), {"unit": "K"}, (200.0, 1.6))


def test_coarsen_mean_blocks_nan_and_trim():
    field = np.arange(5 * 7, dtype=float).reshape(5, 7)
    field[0, 0] = np.nan
    out = coarsen_mean(field, 2)
    assert out.shape == (2, 3)  # odd edges trimmed
    assert np.isnan(out[0, 0])  # any NaN in the block -> NaN
    assert out[1, 2] == pytest.approx(field[2:4, 4:6].mean())
    assert coarsen_mean(field, 1) is field


def test_pixel_centres_edges_and_centres_conventions():
    edges = {"x1": 0.0, "x2": 4000.0, "y1": -3000.0, "y2": 0.0, "xpixelsize": 1000.0, "ypixelsize": 1000.0}
    x, y = pixel_centres(edges, (3, 4))
    np.testing.assert_allclose(x, [500, 1500, 2500, 3500])
    np.testing.assert_allclose(y, [-500, -1500, -2500])  # row 0 = north, y decreasing
    x2, y2 = pixel_centres(edges, (3, 4), factor=2)
    np.testing.assert_allclose(x2, [1000, 3000])
    np.testing.assert_allclose(y2, [-1000])
    # bom_rf3 style: x1..x2 are the first/last pixel centres
    centres = {"x1": 500.0, "x2": 3500.0, "y1": -2500.0, "y2": -500.0, "xpixelsize": 1000.0,
               "ypixelsize": 1000.0}
    xc, yc = pixel_centres(centres, (3, 4))
    np.testing.assert_allclose(xc, x)
    np.testing.assert_allclose(yc, y)
    with pytest.raises(ValueError, match="disagree"):
        pixel_centres(edges, (3, 7))


def test_registry_detects_sources_and_parses_times():
    cases = {
        "202102022100.hf5": ("knmi", dt.datetime(2021, 2, 2, 21, 0)),
        "201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz": ("fmi", dt.datetime(2016, 9, 28, 16, 0)),
        "AQC161932230V_00005.801.gif": ("mch", dt.datetime(2016, 7, 11, 22, 30)),
        "20210704170000.rad.best.comp.rate.qpe.hdf": ("rmi", dt.datetime(2021, 7, 4, 17, 0)),
        "2_20180616_120600.prcp-cscn.nc": ("bom", dt.datetime(2018, 6, 16, 12, 6)),
    }
    for name, (source, when) in cases.items():
        spec = detect_source(name)
        assert spec.name == source
        assert spec.valid_time(name) == when
    assert {"knmi", "fmi", "mch", "rmi", "bom", "odim"} <= set(SOURCES.names())
    with pytest.raises(ValueError, match="cannot tell the radar source"):
        detect_source("notes.txt")
    with pytest.raises(KeyError, match="known: bom"):
        get_source("nope")
