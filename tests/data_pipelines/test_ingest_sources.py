"""Ingest a few real files of every shared source (skipped when ../shared/radar is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipelines.importers import coarsen_mean
from data_pipelines.ingest import ingest_files
from nowcast.data.store import describe_store, open_store

#: source -> whether its importer marks pixels outside coverage (NaN); BOM files carry no mask
EXPECT = {"knmi": True, "fmi": True, "mch": True, "rmi": True, "bom": False}


@pytest.mark.realdata
@pytest.mark.parametrize("source", sorted(EXPECT))
def test_ingest_each_source(source, event_files, tmp_path):
    files = event_files(source, 3)
    report = ingest_files(files, tmp_path / f"{source}.zarr", coarsen=4)  # source auto-detected
    assert report.ok and len(report.ingested) == 3, report.summary()
    ds = open_store(tmp_path / f"{source}.zarr")
    info = describe_store(ds)
    assert info["n_frames"] == 3 and info["coarsen_factor"] == 4
    assert ds.attrs["source_name"] == source and ds.attrs["pysteps_importer"]
    rain = ds.rain_rate.values
    finite = rain[np.isfinite(rain)]
    assert finite.min() == 0.0 and 0.0 < finite.max() < 300.0  # mm/h, some rain, nothing absurd
    assert not ((finite > 0) & (finite < 0.1)).any()  # below 0.1 mm/h -> 0
    assert np.isnan(rain).any() == EXPECT[source]
    # coverage is the same in consecutive frames of one composite
    assert (np.isnan(rain[0]) == np.isnan(rain[-1])).mean() > 0.99
    assert np.all(np.diff(ds.y.values) < 0) and np.all(np.diff(ds.x.values) > 0)  # north-up
    assert list(ds.source_file.values.astype(str)) == [f.name for f in files]


@pytest.mark.realdata
def test_mch_accumulation_converted_to_rate(event_files, tmp_path):
    from pysteps.io import get_method

    files = event_files("mch", 1)
    ingest_files(files, tmp_path / "m.zarr", coarsen=2)
    stored = open_store(tmp_path / "m.zarr").rain_rate.values[0]
    mm, _, meta = get_method("mch_gif", "importer")(str(files[0]), product="AQC", unit="mm", accutime=5.0)
    expected = coarsen_mean(np.asarray(mm, dtype=float) * 12.0, 2)  # 5-min mm -> mm/h
    expected[expected < 0.1] = 0.0
    np.testing.assert_allclose(stored, expected, rtol=1e-5, equal_nan=True)
    assert 20.0 < np.nanmax(stored) < 200.0  # summer convection event


@pytest.mark.realdata
def test_knmi_outside_composite_is_nan_and_no_echo_is_dry(event_files, tmp_path):
    import h5py

    files = event_files("knmi", 1)
    ingest_files(files, tmp_path / "k.zarr")
    rain = open_store(tmp_path / "k.zarr").rain_rate.values[0]
    with h5py.File(files[0]) as f:
        pv = f["image1/image_data"][:]
    np.testing.assert_array_equal(np.isnan(rain), pv == 255)  # out of image -> NaN
    assert (rain[pv == 0] == 0).all()  # PV 0 (-32 dBZ floor) -> dry
