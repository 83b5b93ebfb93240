"""Open a rain store (zarr or netCDF) lazily, validated against :mod:`nowcast.schema`.

Stores are written by ``nowcast ingest`` (``data_pipelines``): ``rain_rate`` (time, y, x) in mm/h,
NaN outside coverage, row 0 = northern edge (``y`` decreasing), ``x``/``y`` pixel centres in
metres, one frame per zarr chunk.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_pipelines.store import (
    NETCDF_SUFFIXES,
    crs_name,
    is_zarr_store,
    read_store,
    recover_for_reading,
    scratch_paths,
)
from nowcast.schema import RainValueError, StoreError, check_rain_values, validate_rain_dataset


def undecodable_chunk(err: BaseException) -> bool:
    """Whether ``err`` was raised while a stored chunk was decoded (in numcodecs: blosc, zstd, zlib):
    a store or motion cache damaged outside nowcast, whose own writes are atomic (a disk error, an
    interrupted copy). Its reads raise a codec's ``RuntimeError`` or ``ValueError`` with no path; a
    data-loader worker re-raises it with the worker's traceback in the message."""
    frames = traceback.extract_tb(err.__traceback__)
    return any("numcodecs" in frame.filename for frame in frames) or "/numcodecs/" in str(err)


def damaged_store_message(err: BaseException) -> str:
    """One line for :func:`undecodable_chunk` errors: what happened and the fix."""
    return (f"a stored chunk cannot be decoded ({type(err).__name__}: {err}): a rain store or motion "
            "cache this command read was damaged outside nowcast (a disk error, an interrupted copy); "
            "ingest its raw files into a new store (`nowcast motion` rebuilds a cache) or restore it "
            "from a copy")


def open_store(path: str | Path, check_values: bool = False, chunks: str | None = "frames") -> xr.Dataset:
    """Open the rain store at ``path`` lazily and validate it.

    A directory (``*.zarr``) opens as zarr; ``.nc``/``.nc4`` as netCDF4 (read by
    :func:`data_pipelines.store.read_store`; ``chunks`` as there: "frames" = dask, one frame per
    chunk, None = lazy without dask). Raises ``FileNotFoundError`` if nothing is there and
    :class:`StoreError` if it is not a rain store. With ``check_values`` (for evaluation: reads
    every frame once) also :class:`nowcast.schema.RainValueError` if a frame holds impossible rain
    values (the check ingest applies, :func:`nowcast.schema.check_rain_values`).
    """
    path = Path(path)
    if not path.exists():
        if scratch_paths(path, "bak"):
            raise StoreError(f"rain store {path} is missing but its backup is there: a rewrite was "
                             f"interrupted; `nowcast ingest` into it puts it back")
        raise FileNotFoundError(f"rain store not found: {path} (build one with `nowcast ingest`)")
    if path.suffix.lower() in NETCDF_SUFFIXES:
        try:
            ds = read_store(path, chunks)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is not a readable netCDF rain store: {exc}") from exc
    elif path.is_dir():
        if not is_zarr_store(path):
            raise StoreError(f"{path} is a folder but not a zarr store (no .zgroup / zarr.json)")
        recover_for_reading(path)
        ds = read_store(path, chunks)
    else:
        raise StoreError(f"{path}: expected a zarr store folder or a netCDF file "
                         f"({', '.join(NETCDF_SUFFIXES)})")
    try:
        validate_rain_dataset(ds)
    except StoreError as exc:
        ds.close()
        raise StoreError(f"{path} is not a valid rain store: {exc}") from exc
    if check_values:
        try:
            check_rain_values(ds)
        except RainValueError as exc:
            ds.close()
            raise RainValueError(f"rain store {path}: {exc}; it cannot be evaluated (rebuild it with "
                                 "`nowcast ingest`, which refuses such frames)") from exc
    return ds


def describe_store(ds: xr.Dataset) -> dict[str, Any]:
    """Provenance summary of an opened store (JSON-serialisable).

    Keys: source, product, conversion, n_frames, time_start, time_end (ISO, UTC), grid_shape
    [H, W], pixel_size_m, crs_name, timestep_minutes, coarsen_factor.
    """
    times = ds.time.values
    iso = (lambda t: np.datetime_as_string(t, unit="s") + "Z") if len(times) else (lambda t: None)
    pixel = float(abs(ds.x.values[1] - ds.x.values[0])) if ds.sizes["x"] > 1 else float(
        ds.attrs.get("pixel_size_m", float("nan")))
    return {
        "source": ds.attrs.get("source", "unknown"),
        "product": ds.attrs.get("product", ""),
        "conversion": ds.attrs.get("conversion", ""),
        "n_frames": int(len(times)),
        "time_start": iso(times[0]) if len(times) else None,
        "time_end": iso(times[-1]) if len(times) else None,
        "grid_shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "pixel_size_m": pixel,
        "crs_name": crs_name(ds),
        "timestep_minutes": float(ds.attrs["timestep_minutes"]) if "timestep_minutes" in ds.attrs else None,
        "coarsen_factor": int(ds.attrs.get("coarsen_factor", 1)),
    }
