"""Precomputed motion fields per anchor time, stored beside the rain store.

Optical flow on every training sample is slow, and the GPU machine has no pysteps, so the
motion that conditions models is computed once per anchor time (the last past frame) with
:func:`nowcast.data.motion.estimate_motion` on the **full field** of the ``n_in`` past frames
and kept in a sibling zarr store (``knmi.zarr`` -> ``knmi.motion.zarr``)::

    motion (time, component, yc, xc) float32   component = [u (+x), v (+y)]
                                               pixels (of the full-resolution grid) per time step

Motion fields are smooth, so they are stored block-averaged by ``coarsen`` (4 or 8) and read
back bilinearly upsampled to the full grid (:meth:`MotionCache.read`). The attributes carry
``n_in``, ``method``, ``coarsen`` and the full grid size; a cache built with other settings
is refused rather than silently mixed.

Crash safety is the rain store's (:mod:`data_pipelines.store`): a build holds the cache's writer
lock (``<cache>.lock``; a second build is refused) and first recovers what a killed build left;
a new cache appears by a rename; each batch is appended as a journalled transaction, and readers
see only committed anchors (the consolidated metadata is rewritten last). So every anchor a cache
lists has its field. A cache written before this (no consolidated metadata, possibly listing
anchors whose field was never written: NaN) is rewritten once at the next build without them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from data_pipelines.store import (
    TIME_ENCODING,
    append_zarr,
    create_zarr,
    locked_store,
    read_store,
    replace_zarr,
)
from nowcast.data.store import open_store
from nowcast.data.windows import valid_starts
from nowcast.schema import RAIN, timestep

MOTION_VAR = "motion"

log = logging.getLogger(__name__)


def motion_cache_path(store_path: str | Path) -> Path:
    """``stores/knmi.zarr`` -> ``stores/knmi.motion.zarr``."""
    p = Path(store_path)
    stem = p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.name
    return p.with_name(f"{stem}.motion.zarr")


def coarsen_motion(motion: np.ndarray, factor: int) -> np.ndarray:
    """(2, H, W) -> (2, ceil(H/f), ceil(W/f)) block means (edges padded by replication)."""
    _, h, w = motion.shape
    ph, pw = -h % factor, -w % factor
    m = np.pad(motion, ((0, 0), (0, ph), (0, pw)), mode="edge")
    return m.reshape(2, m.shape[1] // factor, factor, m.shape[2] // factor, factor).mean(axis=(2, 4))


def upsample_motion(coarse: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`coarsen_motion`: bilinear (pixel-centre aligned) to (2, height, width)."""
    t = torch.from_numpy(np.ascontiguousarray(coarse, dtype=np.float32))[None]
    up = torch.nn.functional.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)
    return up[0, :, :height, :width].numpy()


def anchor_times(ds: xr.Dataset, n_in: int) -> np.ndarray:
    """Times that end ``n_in`` consecutive frames (the anchors a motion field can be computed for)."""
    times = ds["time"].values.astype("datetime64[ns]")
    return times[valid_starts(times, timestep(ds), n_in) + n_in - 1]


def build_motion_cache(
    store_path: str | Path,
    n_in: int = 4,
    coarsen: int = 4,
    times: Sequence[np.datetime64] | np.ndarray | None = None,
    method: str = "LK",
    progress: bool = True,
    flush_every: int = 16,
) -> Path:
    """Compute and store motion for every anchor of ``store_path`` (or only ``times``).

    Resumable: anchors already in the cache are skipped and new ones are appended every
    ``flush_every`` fields, so an interrupted build loses little. Returns the cache path.
    Raises :class:`nowcast.fsutil.LockedError` if another build writes the cache.
    """
    from tqdm.auto import tqdm

    from nowcast.data.motion import estimate_motion

    if coarsen < 1:
        raise ValueError(f"coarsen must be >= 1, got {coarsen}")
    ds = open_store(store_path)
    out = motion_cache_path(store_path)
    anchors = anchor_times(ds, n_in)
    if times is not None:
        wanted = np.asarray(times, dtype="datetime64[ns]")
        missing = np.setdiff1d(wanted, anchors)
        if len(missing):
            raise ValueError(f"{len(missing)} requested times lack {n_in} consecutive past frames in "
                             f"{store_path}, e.g. {missing[:3]}")
        anchors = np.intersect1d(anchors, wanted)
    h, w = ds.sizes["y"], ds.sizes["x"]
    attrs = {"n_in": int(n_in), "method": method, "coarsen": int(coarsen), "height": int(h), "width": int(w),
             "units": "full-resolution pixels per time step", "store": str(Path(store_path).name),
             "timestep_seconds": int(timestep(ds).astype("timedelta64[s]").astype(int))}
    with locked_store(out):  # one build at a time; first recovers what a killed one left
        todo = np.setdiff1d(anchors, _cached_times(out, n_in, method, coarsen, h, w))
        index = {t: i for i, t in enumerate(ds["time"].values.astype("datetime64[ns]"))}
        rain = ds[RAIN]
        fields: list[np.ndarray] = []
        stamps: list[np.datetime64] = []
        for t in tqdm(todo, desc=f"motion {Path(store_path).name}", disable=not progress or len(todo) == 0):
            i = index[t]
            past = np.asarray(rain[i - n_in + 1: i + 1].values, dtype=np.float32)
            fields.append(coarsen_motion(estimate_motion(past, method=method), coarsen).astype(np.float32))
            stamps.append(t)
            if len(fields) >= flush_every:
                _append(out, np.stack(fields), stamps, attrs)
                fields, stamps = [], []
        if fields or not out.exists():  # an empty build still leaves a valid cache with no times
            empty = np.zeros((0, 2, -(-h // coarsen), -(-w // coarsen)), np.float32)
            _append(out, np.stack(fields) if fields else empty, stamps, attrs)
    return out


def _cached_times(out: Path, n_in: int, method: str, coarsen: int, height: int, width: int) -> np.ndarray:
    """The anchors the cache ``out`` holds (none if there is no cache yet), once its settings are
    checked and a cache from before journalled appends is rewritten (:func:`_rewrite_unjournalled`)."""
    if not out.exists():
        return np.zeros(0, dtype="datetime64[ns]")
    cache = MotionCache(out)
    try:
        times = cache.times
    except ValueError as err:  # arrays of different lengths: only an old writer could tear a cache so
        raise ValueError(f"motion cache {out} is unreadable ({err}); delete it to rebuild") from None
    cache.check(n_in=n_in, method=method, height=height, width=width)
    if cache.coarsen != coarsen:
        raise ValueError(f"{out} was built with coarsen={cache.coarsen}, not {coarsen}; delete it to rebuild")
    if not (out / ".zmetadata").is_file():
        _rewrite_unjournalled(out)
        times = MotionCache(out).times
    return times


def _encoding(ds: xr.Dataset) -> dict[str, dict]:
    """One anchor per chunk of ``motion``; times as the rain store's, int64 seconds since 1970 (left
    to xarray, a first batch of one anchor got whole days, into which later anchors were rounded)."""
    return {MOTION_VAR: {"chunks": (1, *ds[MOTION_VAR].shape[1:])}, "time": dict(TIME_ENCODING)}


def _append(out: Path, data: np.ndarray, stamps: list[np.datetime64], attrs: dict) -> None:
    """Write (N, 2, hc, wc) fields for ``stamps`` to a new cache or append them to ``out``
    (atomically either way; the caller holds the cache's lock)."""
    ds = xr.Dataset(
        {MOTION_VAR: (("time", "component", "yc", "xc"), data,
                      {"long_name": "advection field", "units": attrs["units"]})},
        coords={"time": np.asarray(stamps, dtype="datetime64[ns]"),
                "component": np.array(["u", "v"], dtype=object)},
        attrs=attrs,
    )
    if out.exists():
        append_zarr(ds.drop_vars("component"), out)
    else:
        create_zarr(ds, out, _encoding(ds))


def _rewrite_unjournalled(out: Path) -> None:
    """Rewrite a cache from before journalled appends (no consolidated metadata), keeping only the
    first anchor of each time whose field is finite: an interrupted append of the old writer left
    anchors listed whose field was never written (NaN; no motion estimate is), and concurrent builds
    repeated anchors. The next build computes the dropped anchors again."""
    with read_store(out) as old:  # one anchor per dask chunk: streams
        times = old["time"].values
        finite = np.flatnonzero(np.isfinite(old[MOTION_VAR]).all(dim=("component", "yc", "xc")).values)
        keep = np.sort(finite[np.unique(times[finite], return_index=True)[1]])
        cache = old.isel(time=keep)
        for var in cache.variables.values():
            var.encoding = {}
        replace_zarr(cache, out, _encoding(cache))
    lost = np.setdiff1d(times, times[keep]).astype("datetime64[m]")
    log.warning("%s: rewritten with journalled appends, %d of its %d entries dropped (fields never written, "
                "repeats); anchors to compute again: %s", out, len(times) - len(keep), len(times),
                ", ".join(map(str, lost[:5])) + (", ..." if len(lost) > 5 else "") if len(lost) else "none")


class MotionCache:
    """Read access to a motion cache; opens the zarr lazily (safe to pickle into workers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ds: xr.Dataset | None = None
        self._index: dict[np.datetime64, int] | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_ds": None, "_index": None}

    def load(self) -> MotionCache:
        """Hold every field in memory (for fast training loaders)."""
        self._ds = read_store(self.path, chunks=None).load()
        return self

    @property
    def ds(self) -> xr.Dataset:
        if self._ds is None:
            self._ds = read_store(self.path, chunks=None)
        return self._ds

    @property
    def coarsen(self) -> int:
        return int(self.ds.attrs["coarsen"])

    @property
    def times(self) -> np.ndarray:
        return self.ds["time"].values.astype("datetime64[ns]")

    def check(self, n_in: int, method: str | None = None, height: int | None = None,
              width: int | None = None) -> None:
        """Raise ValueError if the cache was built for another ``n_in``, method or grid."""
        a = self.ds.attrs
        wrong = [f"{k}={a.get(k)!r} (wanted {v!r})" for k, v in
                 (("n_in", n_in), ("method", method), ("height", height), ("width", width))
                 if v is not None and a.get(k) != v]
        if wrong:
            raise ValueError(f"motion cache {self.path} does not match: {', '.join(wrong)}; "
                             "delete it and run build_motion_cache again")

    def __contains__(self, anchor: np.datetime64) -> bool:
        return self._lookup().get(np.datetime64(anchor, "ns")) is not None

    def _lookup(self) -> dict[np.datetime64, int]:
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.times)}
        return self._index

    def read(self, anchor: np.datetime64) -> np.ndarray:
        """(2, H, W) float32 motion (px/step) of the full grid for ``anchor``."""
        i = self._lookup().get(np.datetime64(anchor, "ns"))
        if i is None:
            raise KeyError(f"no motion for {anchor} in {self.path}; run build_motion_cache for it")
        coarse = np.asarray(self.ds[MOTION_VAR][i].values)
        if not np.isfinite(coarse).all():  # only a cache written before journalled appends
            raise ValueError(f"the motion of {anchor} in {self.path} was never written (an interrupted "
                             "build); run nowcast motion again to repair the cache")
        a = self.ds.attrs
        return upsample_motion(coarse, int(a["coarsen"]), int(a["height"]), int(a["width"]))
