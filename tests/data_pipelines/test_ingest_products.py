"""Silent wrong data at ingest (issue 11, item 4): KNMI products are converted by their own
metadata, and impossible rain values are refused at ingest and at evaluation by one check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from radar_builders import KNMI_MISSING, KNMI_OUTSIDE, knmi_accumulation_counts, write_knmi_accumulation

from data_pipelines.ingest import ingest_files, ingest_folder
from data_pipelines.store import is_zarr_store
from nowcast.commands import ingest as ingest_cmd
from nowcast.data.store import open_store
from nowcast.data.synthetic import write_synthetic_store
from nowcast.schema import MAX_RAIN_ATTR, RainValueError, frame_value_problems


@pytest.fixture
def knmi_reflectivity(event_files):
    """One real KNMI reflectivity file (2021-02-02, rainy part of the evening)."""
    return event_files("knmi", 1, start=20)[0]


def rap_name(reflectivity) -> str:
    return f"RAD_NL25_RAP_5min_{reflectivity.stem}.h5"


@pytest.mark.realdata
def test_knmi_accumulation_is_read_as_an_accumulation(knmi_reflectivity, tmp_path):
    folder = tmp_path / "rap"
    folder.mkdir()
    write_knmi_accumulation(knmi_reflectivity, folder / rap_name(knmi_reflectivity))
    report = ingest_folder(folder, tmp_path / "rap.zarr")  # found by folder, source from the name
    assert report.ok and len(report.ingested) == 1, report.summary()
    ds = open_store(tmp_path / "rap.zarr")
    counts = knmi_accumulation_counts(knmi_reflectivity).astype(np.float64)
    expected = counts / 100.0 * 12.0  # 0.01 mm per count in 5 min -> mm/h
    expected[(counts == KNMI_MISSING) | (counts == KNMI_OUTSIDE)] = np.nan
    expected[expected < 0.1] = 0.0
    np.testing.assert_allclose(ds.rain_rate.values[0], expected, rtol=1e-6, equal_nan=True)
    assert "accumulation (mm) over 5 min" in ds.attrs["conversion"]
    assert "ACCUMULATED_PRECIPITATION_[MM]" in ds.attrs["product"]
    assert json.loads(ds.attrs["pysteps_importer_kwargs"]) == {"qty": "ACRR", "accutime": 5.0}
    assert 0.0 < float(ds.rain_fraction[0]) < 0.5
    # the same rain as the reflectivity it was made from, up to the 0.01 mm counts
    ingest_files([knmi_reflectivity], tmp_path / "dbz.zarr")
    dbz = open_store(tmp_path / "dbz.zarr").rain_rate.values[0]
    both = np.isfinite(dbz) & np.isfinite(ds.rain_rate.values[0])
    assert both.mean() > 0.7
    assert np.abs(dbz[both] - ds.rain_rate.values[0][both]).max() <= 0.12 + 1e-4


@pytest.mark.realdata
@pytest.mark.parametrize("edit, reason", [
    ({"parameter": "RADIAL_VELOCITY_[M/S]"}, "is not one pysteps' knmi_hdf5 reads"),
    ({"formula": "GEO = 0.020000 * PV + 0.000000"}, "refusing to convert it"),
    ({"product": "RAD_NL25_RAP", "minutes": 0.0}, "states no accumulation time"),
    ({"minutes": 60.0}, "accumulation time is ambiguous"),
])
def test_knmi_product_that_cannot_be_read_right_is_skipped(knmi_reflectivity, tmp_path, edit, reason):
    path = write_knmi_accumulation(knmi_reflectivity, tmp_path / f"RAD_NL25_RAP_{knmi_reflectivity.stem}.h5",
                                   **edit)
    report = ingest_files([path], tmp_path / "s.zarr")
    assert not report.ingested and len(report.skipped) == 1, report.summary()
    assert reason in report.skipped[0][1]
    assert not is_zarr_store(tmp_path / "s.zarr")


def test_frame_value_problems_name_each_impossibility():
    rain = np.zeros((5, 4, 4), dtype=np.float32)
    rain[:, 0, 0] = np.nan  # outside coverage: allowed
    rain[1, 1, 1] = np.inf
    rain[2, 1, 1] = -0.5
    rain[3, 1, 1] = 7864.0
    fraction = np.array([0.0, 0.0, 0.0, 0.0, 2.92])
    problems = dict(frame_value_problems(rain, fraction, ceiling=500.0))
    assert sorted(problems) == [1, 2, 3, 4]
    assert problems[1] == "non-finite rain rate (inf)"
    assert problems[2] == "negative rain rate (min -0.5 mm/h)"
    assert problems[3] == "rain rate 7864 mm/h above the ceiling of 500 mm/h"
    assert problems[4] == "rain_fraction 2.92 outside [0, 1]"


@pytest.mark.realdata
def test_frames_above_the_ceiling_are_skipped_with_a_reason(mch_files, tmp_path, capsys):
    ingest_files(mch_files, tmp_path / "all.zarr")
    peaks = np.nanmax(open_store(tmp_path / "all.zarr").rain_rate.values, axis=(1, 2))
    ceiling = float(np.median(peaks))
    above = {f.name for f, peak in zip(mch_files, peaks, strict=True) if peak > ceiling}
    assert above and len(above) < len(mch_files)
    store = tmp_path / "capped.zarr"
    argv = [*map(str, mch_files), "--store", str(store), "--max_rain_rate", str(ceiling)]
    assert ingest_cmd.main(argv) == 1
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.strip().startswith("skipped")]
    for name in above:  # one line per reason: files with the same peak share it, each named
        assert any(name in line and "RainValueError" in line and "impossible rain values after accumulation"
                   in line for line in skipped)
    assert f"above the ceiling of {ceiling:g} mm/h; refusing the frame" in out
    ds = open_store(store, check_values=True)
    assert set(ds.source_file.values) == {f.name for f in mch_files} - above
    assert float(ds.attrs[MAX_RAIN_ATTR]) == ceiling
    # admitted later under a higher ceiling: the store records it, so evaluation accepts them
    assert ingest_files(mch_files, store, max_rain_mm_h=500.0).ok
    ds = open_store(store, check_values=True)
    assert ds.sizes["time"] == len(mch_files) and float(ds.attrs[MAX_RAIN_ATTR]) == 500.0


@pytest.mark.parametrize("frame, value, fraction, reason", [
    (4, np.inf, None, "non-finite rain rate (inf)"),
    (2, -3.0, None, "negative rain rate (min -3 mm/h)"),
    (5, 900.0, None, "rain rate 900 mm/h above the ceiling of 500 mm/h"),
    (3, None, 2.92, "rain_fraction 2.92 outside [0, 1]"),
])
def test_evaluation_refuses_a_store_with_impossible_values(tmp_path, capsys, frame, value, fraction, reason):
    from nowcast.cli import main as cli_main

    store = write_synthetic_store(tmp_path / "bad.zarr", n_frames=12, height=48, width=48, seed=5)
    group = zarr.open_group(str(store), mode="r+")
    if value is not None:
        group["rain_rate"][frame, 20, 20] = value
    if fraction is not None:
        group["rain_fraction"][frame] = fraction
    open_store(store).close()  # still a valid store by its schema
    with pytest.raises(RainValueError, match="impossible rain values"):
        open_store(store, check_values=True)
    out = tmp_path / "report"
    argv = ["evaluate", "--store", str(store), "--crop", "40", "--n-out", "3", "--max-windows", "2",
            "--models", "persistence", "--perceptual", "false", "--no_progress", "--output", str(out)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nowcast evaluate: error: rain store ")
    assert f"1 of 12 frames hold impossible rain values, first 2024-06-01T12:{5 * frame:02d}:00" in err
    assert reason in err and "rebuild it with `nowcast ingest`" in err
    assert not out.exists()
