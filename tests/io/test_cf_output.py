"""CF forecast files: netCDF and zarr round trips, CF attributes, valid times, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import json
import time

import netCDF4
import numpy as np
import pytest
import xarray as xr
from full_disk import LATE_S, disk_fills_at

from nowcast.data.synthetic import synthetic_event
from nowcast.fsutil import WriteError
from nowcast.io import ForecastExistsError, Provenance, forecast_dataset, open_forecast, write_forecast
from nowcast.io.cf import forecast_filename, provenance_lists

M, T, H, W = 2, 3, 24, 28


@pytest.fixture(scope="module")
def store() -> xr.Dataset:
    return synthetic_event(n_frames=5, height=H, width=W)


@pytest.fixture
def forecast(store, tmp_path) -> xr.Dataset:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    rain = np.random.default_rng(0).gamma(1.0, 2.0, size=(M, T, H, W)).astype(np.float32)
    prov = Provenance(
        forecaster={"model": "steps", "kmperpixel": 2.0},
        input_store="/data/store.zarr",
        input_times=store.time.values[1:5],
        input_files=store.source_file.values[1:5].tolist(),
        checkpoint=str(ckpt),
    )
    coverage = np.isfinite(store.rain_rate.values[1:5]).all(axis=0)
    return forecast_dataset(rain, store.time.values[4], np.timedelta64(5, "m"), store, prov, coverage)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip(forecast, store, tmp_path, suffix):
    path = write_forecast(forecast, tmp_path / f"f{suffix}")
    ds = open_forecast(path)
    assert ds.rain_rate.dims == ("member", "lead_time", "y", "x")
    np.testing.assert_array_equal(ds.rain_rate.values, forecast.rain_rate.values)  # NaN in the same places
    assert ds.rain_rate.attrs["units"] == "mm h-1"
    assert ds.rain_rate.attrs["standard_name"] == "lwe_precipitation_rate"
    assert ds.rain_rate.attrs["grid_mapping"] == "crs"
    assert ds.crs.attrs["crs_wkt"] == store.crs.attrs["crs_wkt"]
    np.testing.assert_array_equal(ds.x.values, store.x.values)
    np.testing.assert_array_equal(ds.y.values, store.y.values)
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.x.attrs["units"] == "m"
    issue = store.time.values[4]
    assert ds.forecast_reference_time.values == issue
    leads = np.array([5, 10, 15], dtype="timedelta64[m]")
    np.testing.assert_array_equal(ds.lead_time.values, leads.astype("timedelta64[ns]"))
    np.testing.assert_array_equal(ds.time.values, issue + leads)
    assert ds.time.attrs["standard_name"] == "time"
    assert ds.member.values.tolist() == [0, 1]
    assert ds.attrs["Conventions"].startswith("CF-")
    assert ds.attrs["model"] == "steps"
    assert json.loads(ds.attrs["forecaster"])["kmperpixel"] == 2.0
    assert ds.attrs["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    lists = provenance_lists(ds)
    assert lists["input_times"][-1] == f"{np.datetime64(issue, 's')}Z"
    assert lists["input_files"] == store.source_file.values[1:5].tolist()
    assert "nowcast_version" in ds.attrs and "date_created" in ds.attrs


def test_nan_exactly_outside_input_coverage(forecast, store):
    covered = np.isfinite(store.rain_rate.values[1:5]).all(axis=0)
    assert (~covered).any() and covered.any()
    nan = np.isnan(forecast.rain_rate.values)
    assert (nan == ~covered[None, None]).all()


def test_netcdf_encodes_lead_time_in_minutes(forecast, tmp_path):
    path = write_forecast(forecast, tmp_path / "f.nc")
    with netCDF4.Dataset(path) as nc:
        assert nc["lead_time"].units == "minutes"
        assert nc["lead_time"][:].tolist() == [5, 10, 15]
        assert nc["time"].standard_name == "time"
        assert "_FillValue" not in nc["x"].ncattrs()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_refuses_to_overwrite_unless_asked(forecast, tmp_path, suffix):
    path = write_forecast(forecast, tmp_path / f"f{suffix}")
    with pytest.raises(ForecastExistsError, match="--overwrite"):
        write_forecast(forecast, path)
    changed = forecast.copy(deep=True)
    changed["rain_rate"] = changed.rain_rate * 2
    write_forecast(changed, path, overwrite=True)
    np.testing.assert_array_equal(open_forecast(path).rain_rate.values, changed.rain_rate.values)


@pytest.mark.parametrize(("suffix", "method", "error", "reason"), [
    (".nc", "to_netcdf", RuntimeError("NetCDF: HDF error"), "NetCDF: HDF error"),  # netCDF4 on a full disk
    (".zarr", "to_zarr", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
])
def test_failed_write_leaves_nothing(forecast, tmp_path, monkeypatch, suffix, method, error, reason):
    original = getattr(xr.Dataset, method)

    def write_half_then_fail(self, path, *args, **kwargs):
        original(self.isel(lead_time=[0]), path, *args, **kwargs)  # a partial file lands on disk
        raise error

    monkeypatch.setattr(xr.Dataset, method, write_half_then_fail)
    path = tmp_path / f"f{suffix}"
    with pytest.raises(WriteError) as err:
        write_forecast(forecast, path)
    assert str(err.value) == f"cannot write {path}: {reason} (disk full or not writable?)"
    assert list(tmp_path.iterdir()) == [tmp_path / "model.ckpt"]


def test_a_runtime_error_that_is_not_the_disk_is_not_called_a_write_failure(forecast, tmp_path, monkeypatch):
    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="^bug$"):
        write_forecast(forecast, tmp_path / "f.nc")


def test_failed_overwrite_keeps_the_old_forecast(forecast, tmp_path, monkeypatch):
    path = write_forecast(forecast, tmp_path / "f.nc")
    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        write_forecast(forecast, path, overwrite=True)
    np.testing.assert_array_equal(open_forecast(path).rain_rate.values, forecast.rain_rate.values)


def test_a_zarr_forecast_on_a_full_disk_leaves_nothing(forecast, tmp_path, monkeypatch):
    """zarr goes on writing chunks after the first one failed (``full_disk``): measured on a real
    full disk, the temporary folder came back after its removal and kept the disk full."""
    disk_fills_at(monkeypatch, n=1)
    path = tmp_path / "f.zarr"
    with pytest.raises(WriteError, match="No space left on device"):
        write_forecast(forecast, path)
    time.sleep(3 * LATE_S)
    assert list(tmp_path.iterdir()) == [tmp_path / "model.ckpt"]


def test_a_zarr_overwrite_killed_between_its_renames_is_undone_by_the_next_write(forecast, tmp_path):
    """The old forecast moved aside (the kill came before the new one took its name) goes back, so
    the folder again holds it and no hidden copy; a plain write is then refused as usual."""
    path = write_forecast(forecast, tmp_path / "f.zarr")
    aside = tmp_path / ".f.zarr.old-0123abcd"
    path.rename(aside)  # the state a kill between the two renames leaves
    with pytest.raises(ForecastExistsError):
        write_forecast(forecast, path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "model.ckpt") == ["f.zarr"]
    np.testing.assert_array_equal(open_forecast(path).rain_rate.values, forecast.rain_rate.values)


def test_bad_suffix_and_bad_shape_are_refused(forecast, store, tmp_path):
    with pytest.raises(ValueError, match=r"\.nc or \.zarr"):
        write_forecast(forecast, tmp_path / "f.grib")
    prov = Provenance({"model": "x"}, "s", store.time.values[:1])
    with pytest.raises(ValueError, match="grid"):
        forecast_dataset(np.zeros((1, 2, H + 1, W)), store.time.values[0], np.timedelta64(5, "m"),
                         store, prov)


def test_batch_file_names_sort_by_issue_time():
    a = forecast_filename("steps", np.datetime64("2016-07-11T16:00"))
    b = forecast_filename("steps", np.datetime64("2016-07-11T16:05"), ".zarr")
    assert a == "steps_20160711T1600Z.nc" and b == "steps_20160711T1605Z.zarr" and a < b
