"""Store behaviour: idempotent append, out-of-order merge, duplicates, bad files, other grids, netCDF."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
from tree_digest import tree_digest

from data_pipelines.ingest import ingest_files, ingest_folder
from data_pipelines.store import export_netcdf
from nowcast.commands import ingest as ingest_cmd
from nowcast.data.store import describe_store, open_store
from nowcast.schema import StoreError

pytestmark = pytest.mark.realdata


def test_idempotent_incremental_append(mch_files, tmp_path):
    store = tmp_path / "s.zarr"
    first = ingest_files(mch_files[:3], store, coarsen=4)
    assert first.n_frames == 3
    second = ingest_files(mch_files[1:5], store, coarsen=4)  # 2 stored, 2 new
    assert len(second.ingested) == 2 and len(second.duplicates) == 2 and second.n_frames == 5
    digest = tree_digest(store)
    again = ingest_files(mch_files[:5], store, coarsen=4)
    assert again.ingested == [] and len(again.duplicates) == 5
    assert tree_digest(store) == digest  # re-ingesting changes nothing, not even attributes
    fresh = ingest_files(mch_files[:5], tmp_path / "fresh.zarr", coarsen=4)
    assert fresh.n_frames == 5
    appended, whole = open_store(store).load(), open_store(tmp_path / "fresh.zarr").load()
    xr.testing.assert_identical(appended.drop_attrs(deep=False), whole.drop_attrs(deep=False))


def test_rerun_with_another_zr_relation_skips_the_stored_times_with_the_reason(event_files, tmp_path):
    """Already stored times are not converted again; a rerun with another Z-R relation used to
    report them as stored and succeed, as if the store held this run's conversion."""
    files = event_files("knmi", 2)
    store = tmp_path / "k.zarr"
    ingest_files(files, store, coarsen=2)
    digest = tree_digest(store)
    report = ingest_files(files, store, coarsen=2, zr=(300.0, 1.5))
    assert report.ingested == [] and report.duplicates == [] and len(report.skipped) == 2
    assert all("Z = 300 R^1.5" in why and "Z = 200 R^1.6" in why for _, why in report.skipped)
    assert tree_digest(store) == digest
    assert len(ingest_files(files, store, coarsen=2).duplicates) == 2  # the store's own relation


def test_out_of_order_merge_and_duplicate_times(mch_files, tmp_path):
    store = tmp_path / "s.zarr"
    ingest_files(mch_files[3:6], store, coarsen=4)
    # an earlier batch, plus a copy of a file under another name with the same valid time
    dup = tmp_path / mch_files[0].name.replace("V_", "F_") if "V_" in mch_files[0].name else \
        tmp_path / mch_files[0].name.replace("F_", "V_")
    shutil.copy(mch_files[0], dup)
    report = ingest_files([mch_files[1], dup, mch_files[0], mch_files[2]], store, coarsen=4)
    assert report.rewritten and len(report.ingested) == 3 and len(report.duplicates) == 1
    ds = open_store(store)
    assert ds.sizes["time"] == 6 and bool((np.diff(ds.time.values) > np.timedelta64(0)).all())
    ingest_files(mch_files, tmp_path / "ref.zarr", coarsen=4)
    np.testing.assert_array_equal(ds.rain_rate.values, open_store(tmp_path / "ref.zarr").rain_rate.values)
    assert ds.attrs["source"] == "MeteoSwiss"  # provenance survives the rewrite
    assert not list(tmp_path.glob("s.zarr.*"))  # no temp/backup left behind


def test_truncated_file_skipped_rest_lands(mch_files, tmp_path):
    bad = tmp_path / mch_files[2].name
    data = mch_files[2].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    files = [mch_files[0], mch_files[1], bad, mch_files[3]]
    report = ingest_files(files, tmp_path / "s.zarr", coarsen=4)
    assert [f for f, _ in report.skipped] == [str(bad)] and not report.ok
    assert len(report.ingested) == 3
    ds = open_store(tmp_path / "s.zarr")  # still a valid store
    assert ds.sizes["time"] == 3 and bad.name not in ds.source_file.values.astype(str)


def test_other_grid_refused_store_unchanged(mch_files, event_files, tmp_path):
    store = tmp_path / "s.zarr"
    ingest_files(mch_files[:2], store, coarsen=4)
    digest = tree_digest(store)
    rmi = event_files("rmi", 1)
    report = ingest_files(rmi, store, coarsen=4)
    (name, why), = report.skipped
    assert "grid mismatch" in why and "lambert_conformal_conic" in why and "oblique_mercator" in why
    coarser = ingest_files(mch_files[2:3], store, coarsen=2)  # same radar, other resolution
    assert "grid mismatch" in coarser.skipped[0][1]
    assert tree_digest(store) == digest


def _store_crs_wkt(store, change) -> None:
    """Reword the CRS of ``store`` in place (its crs variable's WKT, as another PROJ would write it)."""
    import json

    for name in ("crs/.zattrs", ".zmetadata"):
        meta = json.loads((store / name).read_text())
        attrs = meta if name == "crs/.zattrs" else meta["metadata"]["crs/.zattrs"]
        attrs["crs_wkt"] = change(attrs["crs_wkt"])
        (store / name).write_text(json.dumps(meta))


def test_one_crs_worded_otherwise_is_the_same_grid(mch_files, tmp_path):
    """A store whose CRS WKT names its axes otherwise (another PROJ, another writer: the same CRS)
    refused every new scan as "on grid [X] but store holds grid [X]"; now compared as a CRS."""
    store = tmp_path / "s.zarr"
    ingest_files(mch_files[:2], store, coarsen=4)
    _store_crs_wkt(store, lambda wkt: wkt.replace('AXIS["latitude"', 'AXIS["geodetic latitude (Lat)"')
                   .replace('AXIS["longitude"', 'AXIS["geodetic longitude (Lon)"'))
    report = ingest_files(mch_files[2:4], store, coarsen=4)
    assert report.ok and len(report.ingested) == 2 and report.n_frames == 4
    # a CRS that is really another (same name, size and extent) is refused, saying how it differs
    _store_crs_wkt(store, lambda wkt: wkt.replace('"Latitude of projection centre",46.9524055555556',
                                                  '"Latitude of projection centre",46.9'))
    (name, why), = ingest_files(mch_files[4:5], store, coarsen=4).skipped
    assert "grid mismatch" in why and "+lat_0=46.9524055555556" in why and "+lat_0=46.9 " in why


def test_netcdf_round_trip(mch_files, tmp_path):
    store = tmp_path / "s.zarr"
    ingest_files(mch_files[:3], store, coarsen=4)
    nc = export_netcdf(store, tmp_path / "s.nc")
    z, n = open_store(store).load(), open_store(nc).load()
    xr.testing.assert_equal(z[["rain_rate", "rain_fraction"]], n[["rain_rate", "rain_fraction"]])
    assert list(z.source_file.values.astype(str)) == list(n.source_file.values.astype(str))
    assert z.crs.attrs["crs_wkt"] == n.crs.attrs["crs_wkt"] and n.rain_rate.attrs["units"] == "mm h-1"
    assert describe_store(z) == describe_store(n)


def test_open_store_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "missing.zarr.bak-mine").mkdir()  # a user's copy says nothing about the store
    with pytest.raises(FileNotFoundError, match="not found"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / ".missing.zarr.nowcast-bak-123").mkdir()  # a merge's backup: the store is recoverable
    with pytest.raises(StoreError, match="backup is there"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="not a zarr store"):
        open_store(tmp_path / "folder")
    with pytest.raises(StoreError, match="not a zarr store"):
        ingest_files([], tmp_path / "folder")


def test_ingest_folder_and_cli(mch_files, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in mch_files[:3]:
        shutil.copy(f, raw / f.name)
    (raw / "README.txt").write_text("not radar")
    assert ingest_folder(raw, tmp_path / "a.zarr", coarsen=4).n_frames == 3
    for f in mch_files[3:5]:
        shutil.copy(f, raw / f.name)
    rc = ingest_cmd.main([str(raw), "--store", str(tmp_path / "a.zarr"), "--coarsen", "4",
                          "--netcdf", str(tmp_path / "a.nc")])
    assert rc == 0 and open_store(tmp_path / "a.nc").sizes["time"] == 5
    with pytest.raises(SystemExit) as exc:
        ingest_cmd.main(["--help"])
    assert exc.value.code == 0
