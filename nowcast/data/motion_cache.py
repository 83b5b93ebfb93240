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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from data_pipelines.store import read_store
from nowcast.data.store import open_store
from nowcast.data.windows import valid_starts
from nowcast.schema import RAIN, timestep

MOTION_VAR = "motion"


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
    done = np.zeros(0, dtype="datetime64[ns]")
    if out.exists():
        cache = MotionCache(out)
        cache.check(n_in=n_in, method=method, height=h, width=w)
        if cache.coarsen != coarsen:
            raise ValueError(f"{out} was built with coarsen={cache.coarsen}, not {coarsen}; "
                             "delete it to rebuild")
        done = cache.times
    todo = np.setdiff1d(anchors, done)
    index = {t: i for i, t in enumerate(ds["time"].values.astype("datetime64[ns]"))}
    rain = ds[RAIN]
    fields: list[np.ndarray] = []
    stamps: list[np.datetime64] = []
    first_write = not out.exists()
    for t in tqdm(todo, desc=f"motion {Path(store_path).name}", disable=not progress or len(todo) == 0):
        i = index[t]
        past = np.asarray(rain[i - n_in + 1: i + 1].values, dtype=np.float32)
        fields.append(coarsen_motion(estimate_motion(past, method=method), coarsen).astype(np.float32))
        stamps.append(t)
        if len(fields) >= flush_every:
            _append(out, np.stack(fields), stamps, attrs, first_write)
            first_write, fields, stamps = False, [], []
    if fields or first_write:  # an empty build still leaves a valid cache with no times
        empty = np.zeros((0, 2, -(-h // coarsen), -(-w // coarsen)), np.float32)
        data = np.stack(fields) if fields else empty
        _append(out, data, stamps, attrs, first_write)
    return out


def _append(out: Path, data: np.ndarray, stamps: list[np.datetime64], attrs: dict, create: bool) -> None:
    """Write (N, 2, hc, wc) fields for ``stamps`` to a new cache or append them to ``out``."""
    ds = xr.Dataset(
        {MOTION_VAR: (("time", "component", "yc", "xc"), data,
                      {"long_name": "advection field", "units": attrs["units"]})},
        coords={"time": np.asarray(stamps, dtype="datetime64[ns]"),
                "component": np.array(["u", "v"], dtype=object)},
        attrs=attrs,
    )
    if create:
        ds[MOTION_VAR].encoding["chunks"] = (1, 2, data.shape[2], data.shape[3])
        ds.to_zarr(out, mode="w", zarr_format=2, consolidated=False)
    else:
        ds.drop_vars("component").to_zarr(out, append_dim="time", consolidated=False)


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
        a = self.ds.attrs
        return upsample_motion(coarse, int(a["coarsen"]), int(a["height"]), int(a["width"]))
