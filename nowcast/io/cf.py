"""Forecasts as CF-conventions files (netCDF4 ``.nc`` or zarr ``.zarr``), one file per issue time.

A forecast file looks like::

    <xarray.Dataset>
    Dimensions:  (member, lead_time, y, x)
    Coordinates:
        member                   (member)     int32            ensemble member index (0 ...)
        lead_time                (lead_time)  timedelta64      forecast_period, stored in minutes
        time                     (lead_time)  datetime64       valid time = issue time + lead_time
        forecast_reference_time  ()           datetime64       issue time (last observed frame)
        y, x                     (y), (x)     float64          source grid, m (attributes copied)
        lat, lon                 (y, x)       float32          degrees north / east of each pixel (CF
                                                               auxiliary coordinates, from the grid mapping)
    Data variables:
        rain_rate  (member, lead_time, y, x) float32  mm h-1, NaN outside the input coverage
        crs        ()                         int32    grid mapping copied from the input store
    Attributes: Conventions, title, source, history, model, forecaster (JSON of describe()),
                checkpoint, checkpoint_sha256, input_store, input_times, input_files (JSON lists),
                nowcast_version, date_created

A batch of issue times is written as one file per issue time (see :func:`forecast_filename`):
files stay small, appear as soon as each forecast is done and can be archived or deleted
independently, as operational nowcast products are.

Writing is atomic and durable: the file is written under a temporary name beside the target,
fsynced and renamed into place (the folder fsynced too), so a failed or killed write never leaves
a partial forecast at the final name, even after a power cut, and an existing forecast is
only replaced when ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import nowcast
from nowcast.fsutil import fsync_path, fsync_tree, remove_path, settle_zarr_writes, writing
from nowcast.schema import CONVENTIONS, CRS, RAIN, complete_grid_mapping, latitude_longitude

log = logging.getLogger(__name__)

FORMATS = {".nc": "netcdf", ".zarr": "zarr"}


class ForecastExistsError(FileExistsError):
    """The target forecast file exists and overwriting was not asked for."""


class OutputPathError(ValueError):
    """Forecast files cannot be written where they were asked for."""


def check_output_folder(folder: str | Path) -> None:
    """Refuse a folder that forecast files cannot be written into, before any forecast is computed:
    creates it and the folders above it as ``write_forecast`` would, writes and removes a probe
    file, then removes the folders it created (a refused run elsewhere leaves nothing behind)."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputPathError(f"cannot write forecasts into {folder}: {blocker} is a file, not a folder; "
                              "choose another --output")
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.tmp-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise OutputPathError(f"cannot create or write the output folder {folder} ({err.strerror or err}); "
                              "choose another --output") from err
    finally:
        for p in created:  # innermost first; one another process filled meanwhile stays
            with contextlib.suppress(OSError):
                p.rmdir()


@dataclass
class Provenance:
    """Where a forecast came from; written as global attributes.

    Args:
        forecaster: ``Forecaster.describe()`` (must contain ``"model"``).
        input_store: path of the store the input frames were read from.
        input_times: valid times of the input frames, oldest first.
        input_files: raw file of each input frame (the store's ``source_file``), if known.
        checkpoint: checkpoint path for learned models (its sha256 is computed on write); default:
            the forecaster's own (``forecaster["checkpoint"]``).
        extra: further attributes (strings or numbers).
    """

    forecaster: dict[str, Any]
    input_store: str
    input_times: Sequence[np.datetime64]
    input_files: Sequence[str] = ()
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        from nowcast.models.checkpoint import file_sha256

        ckpt = self.checkpoint or self.forecaster.get("checkpoint")
        notice = self.forecaster.get("skill_notice")
        return {
            "model": str(self.forecaster.get("model", "unknown")),
            **({"skill_notice": str(notice)} if notice else {}),
            "forecaster": json.dumps(self.forecaster, default=str, sort_keys=True),
            "checkpoint": str(ckpt) if ckpt else "none",
            "checkpoint_sha256": file_sha256(ckpt) if ckpt and Path(ckpt).is_file() else "none",
            "input_store": str(self.input_store),
            "input_times": json.dumps([_iso(t) for t in self.input_times]),
            "input_files": json.dumps([str(f) for f in self.input_files]),
            "nowcast_version": nowcast.__version__,
            "date_created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **self.extra,
        }


def _iso(t: np.datetime64) -> str:
    return str(np.datetime64(t, "s")) + "Z"


def forecast_filename(model: str, issue_time: np.datetime64, suffix: str = ".nc") -> str:
    """File name of one issue time in a batch folder, e.g. ``extrapolation_20160711T1600Z.nc``."""
    stamp = np.datetime64(issue_time, "m").astype(dt.datetime).strftime("%Y%m%dT%H%MZ")
    return f"{model}_{stamp}{suffix}"


def forecast_dataset(
    rain: np.ndarray,
    issue_time: np.datetime64,
    timestep: np.timedelta64,
    grid: xr.Dataset,
    provenance: Provenance,
    coverage: np.ndarray | None = None,
) -> xr.Dataset:
    """Wrap a forecast in a CF dataset.

    Args:
        rain: (M, T_out, H, W) mm/h (one issue time of a ``Forecaster.forecast`` result).
        issue_time: valid time of the last observed frame (UTC, naive).
        timestep: time between lead times; lead ``i`` (0-based) is ``(i + 1) * timestep``.
        grid: the input store (or the cropped part used): its ``x``, ``y`` and ``crs``.
        provenance: see :class:`Provenance`.
        coverage: (H, W) bool, True where the radar covered the input; NaN elsewhere.
    """
    rain = np.asarray(rain, dtype=np.float32)
    if rain.ndim != 4:
        raise ValueError(f"rain must be (member, lead_time, y, x), got shape {rain.shape}")
    m, t_out, h, w = rain.shape
    if (h, w) != (grid.sizes["y"], grid.sizes["x"]):
        grid_shape = (grid.sizes["y"], grid.sizes["x"])
        raise ValueError(f"forecast frame {(h, w)} does not match the grid {grid_shape}")
    if coverage is not None:
        rain = np.where(np.asarray(coverage, dtype=bool)[None, None], rain, np.float32(np.nan))
    issue = np.datetime64(issue_time, "ns")
    lead = (np.arange(1, t_out + 1) * np.timedelta64(timestep)).astype("timedelta64[ns]")
    rain_attrs = {
        "standard_name": "lwe_precipitation_rate",
        "long_name": "forecast rain rate",
        "units": "mm h-1",
        "grid_mapping": CRS,
        "comment": "NaN outside the radar coverage of the input frames",
    }
    ds = xr.Dataset(
        data_vars={
            RAIN: (("member", "lead_time", "y", "x"), rain, rain_attrs),
            CRS: ((), np.int32(0), complete_grid_mapping(grid[CRS].attrs)),
        },
        coords={
            "member": ("member", np.arange(m, dtype=np.int32),
                       {"long_name": "ensemble member", "standard_name": "realization", "units": "1"}),
            "lead_time": ("lead_time", lead, {"standard_name": "forecast_period", "long_name": "lead time"}),
            "time": ("lead_time", issue + lead, {"standard_name": "time", "long_name": "valid time (UTC)"}),
            "forecast_reference_time": ((), issue, {"standard_name": "forecast_reference_time",
                                                    "long_name": "issue time (UTC)"}),
            "y": ("y", grid["y"].values, dict(grid["y"].attrs)),
            "x": ("x", grid["x"].values, dict(grid["x"].attrs)),
            **_latlon(grid),
        },
        attrs={
            "Conventions": CONVENTIONS,
            "title": f"precipitation nowcast ({provenance.forecaster.get('model', 'unknown')})",
            "source": "nowcast " + nowcast.__version__,
            "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} created by nowcast forecast",
            **provenance.attributes(),
        },
    )
    return ds


def _latlon(grid: xr.Dataset) -> dict[str, tuple]:
    """CF auxiliary ``lat``/``lon`` (y, x) coordinates of the grid ({} without a WKT)."""
    wkt = grid[CRS].attrs.get("crs_wkt")
    if not wkt:
        return {}
    lat, lon = latitude_longitude(wkt, grid["x"].values, grid["y"].values)
    return {"lat": (("y", "x"), lat, {"standard_name": "latitude", "long_name": "latitude",
                                      "units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"standard_name": "longitude", "long_name": "longitude",
                                      "units": "degrees_east"})}


def _encoding(ds: xr.Dataset, fmt: str) -> dict[str, dict[str, Any]]:
    _, _, h, w = ds[RAIN].shape
    enc: dict[str, dict[str, Any]] = {
        "lead_time": {"units": "minutes", "dtype": "int32"},
        "time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "int64"},
        "forecast_reference_time": {"units": "seconds since 1970-01-01 00:00:00", "calendar": "standard",
                                    "dtype": "int64"},
        RAIN: {"_FillValue": np.float32(np.nan)},
        # CF: coordinate variables carry no fill value
        **{c: {"_FillValue": None} for c in ("x", "y", "member", "lat", "lon") if c in ds.variables},
    }
    if fmt == "netcdf":
        enc[RAIN].update(zlib=True, complevel=4, chunksizes=(1, 1, h, w))
    else:
        enc[RAIN]["chunks"] = (1, 1, h, w)
    return enc


def forecast_format(path: str | Path) -> str:
    """``"netcdf"`` or ``"zarr"`` from the suffix; anything else is refused."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"forecast file must end in .nc or .zarr, got {str(path)!r}")
    return FORMATS[suffix]


def write_forecast(ds: xr.Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` (.nc or .zarr) atomically; refuse an existing file unless ``overwrite``
    (:class:`ForecastExistsError`). A failed write (a full disk) raises
    :class:`~nowcast.fsutil.WriteError` and leaves no temporary file; an old forecast stays."""
    path = Path(path)
    fmt = forecast_format(path)
    _recover_swap(path)
    if path.exists() and not overwrite:
        raise ForecastExistsError(f"forecast {path} exists; use --overwrite to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if fmt == "netcdf":
                ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds, fmt))
            else:
                ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds, fmt), consolidated=False)
            if tmp.is_dir():  # on disk before it gets the final name
                fsync_tree(tmp)
            else:
                fsync_path(tmp)
            _replace(tmp, path)
            fsync_path(path.parent)  # the rename itself survives a power cut
        finally:
            if tmp.is_dir():  # a failed zarr write, whose other chunk writes may still be running
                settle_zarr_writes()
            remove_path(tmp)
    return path


def _recover_swap(path: Path) -> None:
    """Undo what a replacement of the zarr forecast ``path`` killed between its two renames left:
    the forecast moved aside goes back if ``path`` is missing; any other moved-aside copy (a kill
    after the swap, before the removal) is removed. Logged."""
    aside = sorted(path.parent.glob(f".{glob.escape(path.name)}.old-*"),  # newest first
                   key=lambda p: p.stat().st_mtime_ns, reverse=True)
    if aside and not path.exists():
        os.replace(aside.pop(0), path)
        log.warning("put back %s, which an interrupted --overwrite had moved aside", path)
    for old in aside:
        remove_path(old)
        log.warning("removed %s, left by an interrupted --overwrite", old)


def _replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` onto ``path``; a directory (zarr) target is swapped out, then removed (a kill
    between the two renames is undone by the next write to ``path``: :func:`_recover_swap`)."""
    if path.is_dir():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
        os.replace(tmp, path)
        remove_path(old)
    else:
        os.replace(tmp, path)




def open_forecast(path: str | Path) -> xr.Dataset:
    """Read a forecast file written by :func:`write_forecast` into memory (times decoded)."""
    path = Path(path)
    fmt = forecast_format(path)
    if not path.exists():
        raise FileNotFoundError(f"no forecast at {path}")
    if fmt == "netcdf":
        with xr.open_dataset(path, engine="netcdf4", decode_timedelta=True) as ds:
            return ds.load()
    with xr.open_zarr(path, decode_timedelta=True, consolidated=False) as ds:
        return ds.load()


def provenance_lists(ds: xr.Dataset) -> dict[str, list[str]]:
    """The JSON-list provenance attributes of a forecast file, decoded."""
    return {k: json.loads(ds.attrs[k]) for k in ("input_times", "input_files") if k in ds.attrs}
