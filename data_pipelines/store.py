"""Write rain frames into a chunked zarr store following :mod:`nowcast.schema`; export to netCDF4.

Layout on disk: zarr format 2 with consolidated metadata (read by any zarr/xarray), ``rain_rate``
chunked ``(1, H, W)`` (one frame per chunk, so windows read only the frames they need), time
encoded as int64 seconds since 1970-01-01 so 5- and 6-minute steps append exactly.

Writes never leave a half-written store behind:

- new store: written to ``<store>.tmp-<pid>`` and renamed into place;
- frames later than the last stored time: appended along ``time`` (zarr ``append_dim``);
- frames earlier than the last stored time (out of order): the stored and the new frames are
  merged lazily (chunk by chunk) into a temporary store, which then replaces the old one
  (old -> ``.bak``, temp -> store, ``.bak`` removed).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast.schema import CRS, RAIN, SOURCE_FILE, StoreError, make_rain_dataset, validate_rain_dataset

TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian",
                 "dtype": "int64"}
ZARR_FORMAT = 2


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    h, w = ds.sizes["y"], ds.sizes["x"]
    return {
        RAIN: {"chunks": (1, h, w)},
        "time": dict(TIME_ENCODING),
        SOURCE_FILE: {"dtype": object},
    }


def _strip_encoding(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    ds = _strip_encoding(ds)
    ds[SOURCE_FILE] = ds[SOURCE_FILE].astype(object)
    return ds


def is_zarr_store(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / m).exists() for m in (".zgroup", "zarr.json", ".zmetadata"))


def _open(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plain_strings(xr.open_zarr(path, consolidated=None))


def plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """``source_file`` as a plain numpy unicode array (T small strings; zarr may hand back numpy's
    StringDType, which e.g. ``astype(str)`` refuses)."""
    if SOURCE_FILE in ds.variables:
        var = ds[SOURCE_FILE]
        ds[SOURCE_FILE] = (var.dims, np.array([str(s) for s in var.values], dtype=str), var.attrs)
    return ds


def _to_zarr(ds: xr.Dataset, path: Path, **kw: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=ZARR_FORMAT, consolidated=True, **kw)


def create_store(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` (schema-valid) as a new zarr store at ``path``, atomically."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"store already exists: {path}")
    validate_rain_dataset(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ds = _prepare(ds)
    _to_zarr(ds, tmp, mode="w-", encoding=_encoding(ds))
    tmp.rename(path)


def append_store(ds: xr.Dataset, path: str | Path) -> None:
    """Append frames all later than the store's last time (caller checks grid and times)."""
    path = Path(path)
    ds = _prepare(ds)
    # xarray rewrites the group attributes on append: keep the store's own provenance
    with _open(path) as old:
        ds.attrs = dict(old.attrs)
    _to_zarr(ds.drop_vars([CRS, "x", "y"]), path, mode="a", append_dim="time")


def merge_store(ds: xr.Dataset, path: str | Path) -> None:
    """Merge frames (times not in the store, any order) into the store by a safe full rewrite.

    The stored frames are read lazily (dask, one frame per chunk), so this streams.
    """
    path = Path(path)
    with _open(path) as old:
        merged = xr.concat([_strip_encoding(old), _strip_encoding(ds).chunk({"time": 1})], dim="time",
                           data_vars="minimal", coords="minimal", compat="override", join="override",
                           combine_attrs="override").sortby("time")
        validate_rain_dataset(merged)
        merged = _prepare(merged)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _to_zarr(merged.chunk({"time": 1}), tmp, mode="w-", encoding=_encoding(merged))
    bak = path.with_name(f"{path.name}.bak-{os.getpid()}")
    path.rename(bak)
    tmp.rename(path)
    shutil.rmtree(bak)


def stored_index(path: str | Path) -> tuple[np.ndarray, xr.Dataset]:
    """(times (T,) datetime64[ns], the lazily opened store) of an existing store."""
    ds = _open(Path(path))
    validate_rain_dataset(ds)
    return ds.time.values, ds


def frames_dataset(rain: np.ndarray, times: Iterable, x: np.ndarray, y: np.ndarray, crs: str,
                   source_files: list[str], attrs: dict[str, Any]) -> xr.Dataset:
    """Schema dataset of (T, H, W) mm/h frames (thin wrapper naming the store's conventions)."""
    return make_rain_dataset(rain, np.asarray(list(times), dtype="datetime64[ns]"), x, y, crs,
                             source_files, attrs)


def crs_name(ds: xr.Dataset) -> str:
    """A readable name of the store's CRS (for messages and descriptions)."""
    from pyproj import CRS as ProjCRS

    attrs = ds[CRS].attrs
    try:
        name = ProjCRS.from_wkt(attrs["crs_wkt"]).name
    except Exception:  # an unparsable WKT is not fatal for a description
        name = "unknown"
    # CRSs built from bare proj4 strings are named "unknown": the CF mapping name says more
    return name if name != "unknown" else str(attrs.get("grid_mapping_name", "unknown"))


def export_netcdf(store_path: str | Path, nc_path: str | Path) -> Path:
    """Write the zarr store at ``store_path`` to a CF netCDF4 file (same variables and attributes).

    Streams frame by frame (dask) and compresses ``rain_rate`` with zlib. Returns ``nc_path``.
    """
    store_path, nc_path = Path(store_path), Path(nc_path)
    if not is_zarr_store(store_path):
        raise StoreError(f"not a zarr store: {store_path}")
    nc_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = nc_path.with_name(f"{nc_path.name}.tmp-{os.getpid()}")
    with _open(store_path) as ds:
        validate_rain_dataset(ds)
        out = _strip_encoding(ds)
        h, w = ds.sizes["y"], ds.sizes["x"]
        encoding = {RAIN: {"zlib": True, "complevel": 4, "chunksizes": (1, h, w), "_FillValue": np.nan},
                    "time": dict(TIME_ENCODING)}
        out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    tmp.replace(nc_path)
    return nc_path
