"""Torch Dataset of radar windows: crops that prefer rain, consistent augmentation, optional motion.

One item is a dict (keys of :mod:`nowcast.types` plus metadata)::

    past    (T_in, h, w)  float32 mm/h, NaN -> 0
    future  (T_out, h, w) float32 mm/h, NaN -> 0
    mask    (h, w)        bool, True where every frame of the window is covered
    motion  (2, h, w)     float32 px/step (u: +x, v: +y)       only if with_motion
    store   str           store name;  anchor int64 ns since 1970 (last past frame)
    origin  (2,) int64    (row, col) of the crop's top-left pixel in the store grid

Stores are opened lazily once per process (so ``num_workers > 0`` works: nothing open is
pickled) and only the window's frames are read (one zarr chunk per frame).

Training crops prefer rain: crop positions must be at least half covered; among them, those
whose wet fraction (pixels >= ``wet_threshold`` mm/h, averaged over the window's frames) reaches
``min_wet_fraction`` are drawn with probability proportional to that fraction; if none does,
every covered position is drawn proportional to its (small) wet fraction plus a tiny floor.
Evaluation uses a fixed crop centred on the grid (the benchmark's scoring window) or the
full field. Augmentation is one of the 8 symmetries of the square (flip x, then 0-3 quarter
turns), applied to every field; motion vectors are rotated and negated with the grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from nowcast.data.motion_cache import MotionCache, motion_cache_path
from nowcast.data.store import open_store
from nowcast.data.windows import Window
from nowcast.schema import RAIN, RAIN_FRACTION
from nowcast.types import FUTURE, MASK, MOTION, PAST

STORE, ANCHOR, ORIGIN = "store", "anchor", "origin"
#: a crop position must see at least this fraction of covered pixels
MIN_CROP_COVERAGE = 0.5


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``a`` (H, W) over every size x size box: (H - size + 1, W - size + 1), indexed by top-left."""
    c = np.pad(np.cumsum(np.cumsum(a, 0, dtype=np.float64), 1), ((1, 0), (1, 0)))
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return s / float(size * size)


def choose_rainy_crop(
    wet: np.ndarray, covered: np.ndarray, size: int, rng: np.random.Generator, min_wet_fraction: float = 0.05,
    prefer_rain: bool = True,
) -> tuple[int, int]:
    """Top-left (row, col) of a size x size crop, drawn to prefer rain (see module docstring).

    Args:
        wet: (H, W) float in [0, 1], fraction of the window's frames that are wet at each pixel.
        covered: (H, W) bool coverage.
        prefer_rain: False = uniform over the sufficiently covered positions.
    """
    h, w = wet.shape
    if size > h or size > w:
        raise ValueError(f"crop {size}x{size} does not fit a {h}x{w} grid")
    cov = _box_mean(covered.astype(np.float64), size)
    wet_frac = _box_mean(np.where(covered, wet, 0.0), size)
    ok = cov >= min(MIN_CROP_COVERAGE, cov.max() - 1e-9)
    weights = np.where(ok & (wet_frac >= min_wet_fraction), wet_frac, 0.0) if prefer_rain else ok * 1.0
    if weights.sum() <= 0:
        weights = np.where(ok, wet_frac + 1e-6, 0.0)
    flat = rng.choice(weights.size, p=(weights / weights.sum()).ravel())
    return int(flat // weights.shape[1]), int(flat % weights.shape[1])


def centre_crop(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left of the size x size crop centred on the grid (the benchmark's scoring window)."""
    if size > height or size > width:
        raise ValueError(f"evaluation crop {size}x{size} does not fit a {height}x{width} grid")
    return (height - size) // 2, (width - size) // 2


def augment(sample: dict[str, Any], flip: bool, quarter_turns: int,
            fields: tuple[str, ...] = (PAST, FUTURE, MASK)) -> dict[str, Any]:
    """Apply ``flip`` (mirror columns: x -> W-1-x) then ``quarter_turns`` x ``torch.rot90`` to every field.

    The ``fields`` (rain, mask; any (..., h, w) tensor) just move. Motion (2, h, w) = (u, v)
    moves and its vectors transform with the grid: a column mirror negates u; one ``rot90``
    (which maps (row, col) to (W-1-col, row)) maps (u, v) to (v, -u).
    """
    out = dict(sample)
    k = quarter_turns % 4
    for key in (*fields, MOTION):
        if key not in out:
            continue
        x = out[key]
        if flip:
            x = torch.flip(x, dims=(-1,))
        if k:
            x = torch.rot90(x, k, dims=(-2, -1))
        out[key] = x
    if MOTION in out:
        u, v = out[MOTION][0], out[MOTION][1]
        if flip:
            u = -u
        for _ in range(k):
            u, v = v, -u
        out[MOTION] = torch.stack([u, v]).contiguous()
    for key in fields:
        if key in out:
            out[key] = out[key].contiguous()
    return out


def window_weights(stores: Mapping[str, xr.Dataset], windows: Sequence[Window], n_frames: int,
                   floor: float = 0.02) -> np.ndarray:
    """Weight per window: mean ``rain_fraction`` of its frames + ``floor`` (keeps dry ones possible)."""
    fractions = {name: np.nan_to_num(np.asarray(ds[RAIN_FRACTION].values, dtype=np.float64))
                 for name, ds in stores.items() if any(w.store == name for w in windows)}
    cums = {name: np.concatenate([[0.0], np.cumsum(f)]) for name, f in fractions.items()}
    return np.array([(cums[w.store][w.start + n_frames] - cums[w.store][w.start]) / n_frames + floor
                     for w in windows])


class RadarWindowDataset(Dataset):
    """Windows of rain stores as tensor dicts (see the module docstring).

    Args:
        store_paths: store name -> zarr path, for every store the windows refer to.
        windows: the samples (from :mod:`nowcast.data.windows`, filtered by a split).
        n_in, n_out: past and future frames per window.
        crop_size: side of the square crop in pixels; None = full field.
        random_crop: True = random crops (training), False = centred crop.
        prefer_rain: random crops prefer rain (else uniform over covered positions).
        augment: random flips / quarter turns (training only).
        with_motion: add ``motion``; read from the store's motion cache
            (:mod:`nowcast.data.motion_cache`) when one exists, else estimated on the crop.
        min_wet_fraction, wet_threshold: rainy-crop preference (mm/h for the threshold).
    """

    def __init__(
        self,
        store_paths: Mapping[str, str | Path],
        windows: Sequence[Window],
        n_in: int = 4,
        n_out: int = 12,
        crop_size: int | None = None,
        random_crop: bool = False,
        prefer_rain: bool = True,
        augment: bool = False,
        with_motion: bool = False,
        min_wet_fraction: float = 0.05,
        wet_threshold: float = 0.5,
        motion_method: str = "LK",
        in_memory: bool = False,
    ) -> None:
        missing = {w.store for w in windows} - set(store_paths)
        if missing:
            raise KeyError(f"windows refer to stores without a path: {sorted(missing)}")
        self.store_paths = {k: Path(v) for k, v in store_paths.items()}
        self.windows = list(windows)
        self.n_in, self.n_out = n_in, n_out
        self.crop_size, self.random_crop, self.augment = crop_size, random_crop, augment
        self.prefer_rain = prefer_rain
        self.with_motion, self.motion_method = with_motion, motion_method
        self.min_wet_fraction, self.wet_threshold = min_wet_fraction, wet_threshold
        self.motion_caches: dict[str, MotionCache] = {}
        if with_motion:
            for name, path in self.store_paths.items():
                cache_path = motion_cache_path(path)
                if cache_path.exists():
                    cache = MotionCache(cache_path)
                    cache.check(n_in=n_in, method=motion_method)
                    self.motion_caches[name] = cache
        self._open: dict[str, Any] = {}
        self.in_memory = in_memory
        if in_memory:  # decoded once here; forked loader workers share the pages
            for name in {w.store for w in self.windows}:
                ds = open_store(self.store_paths[name], chunks=None)
                self._open[name] = xr.DataArray(np.asarray(ds[RAIN].values, dtype=np.float32))
            for cache in self.motion_caches.values():
                cache.load()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if not self.in_memory:
            state["_open"] = {}  # each worker opens its own handles
        return state

    def __len__(self) -> int:
        return len(self.windows)

    def _rain(self, store: str) -> xr.DataArray:
        if store not in self._open:
            # chunks=None: lazy backend array without dask, slicing reads just those chunks
            self._open[store] = open_store(self.store_paths[store], chunks=None)[RAIN]
        return self._open[store]

    def _motion(self, w: Window, frames: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """(2, h, w) motion of the crop ``frames`` (T, h, w) at (y0, x0): from the cache, else of the crop."""
        cache = self.motion_caches.get(w.store)
        if cache is not None:
            return cache.read(w.anchor)[:, y0:y0 + frames.shape[1], x0:x0 + frames.shape[2]]
        from nowcast.data.motion import estimate_motion  # imports pysteps: only without a cache

        return estimate_motion(frames[: self.n_in], method=self.motion_method)

    def __getitem__(self, index: int) -> dict[str, Any]:
        w = self.windows[index]
        n = self.n_in + self.n_out
        rain = self._rain(w.store)
        h, width = rain.shape[1:]
        size = self.crop_size
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item())) \
            if (self.random_crop or self.augment) else None
        if size is not None and not self.random_crop:  # fixed crop: read only that region
            y0, x0 = centre_crop(h, width, size)
            frames = np.asarray(rain[w.start:w.start + n, y0:y0 + size, x0:x0 + size].values, np.float32)
        else:
            frames = np.asarray(rain[w.start:w.start + n].values, np.float32)
            y0 = x0 = 0
            if size is not None:
                covered = np.isfinite(frames).all(axis=0)
                wet = (frames >= self.wet_threshold).mean(axis=0)  # NaN compares False: not wet
                y0, x0 = choose_rainy_crop(wet, covered, size, rng, self.min_wet_fraction, self.prefer_rain)
                frames = frames[:, y0:y0 + size, x0:x0 + size]
        sample: dict[str, Any] = {
            PAST: torch.from_numpy(np.nan_to_num(frames[: self.n_in])),
            FUTURE: torch.from_numpy(np.nan_to_num(frames[self.n_in:])),
            MASK: torch.from_numpy(np.isfinite(frames).all(axis=0)),
        }
        if self.with_motion:
            motion = self._motion(w, frames, y0, x0)
            sample[MOTION] = torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32))
        if self.augment:
            sample = augment(sample, bool(rng.integers(2)), int(rng.integers(4)))
        sample[STORE] = w.store
        sample[ANCHOR] = torch.tensor(int(w.anchor.astype("datetime64[ns]").astype(np.int64)))
        sample[ORIGIN] = torch.tensor([y0, x0], dtype=torch.int64)
        return sample
