"""LightningDataModule over rain stores, split by whole events (the ``data`` part of configs).

Its typed ``__init__`` is the configuration schema (``configs/data/*.yaml``; usable as the
``data`` class of LightningCLI); no I/O happens before :meth:`NowcastDataModule.setup`.

Training windows are drawn with a :class:`~torch.utils.data.WeightedRandomSampler`, weight =
mean rain fraction of the window's frames + ``dry_weight``, so that the mostly-dry KNMI
evenings do not drown the rain; each epoch is ``samples_per_epoch`` windows. Validation and
test use every window of their events, in order, with the fixed centred ``eval_crop_size``
crop (None = full field; then windows of differently sized stores need ``batch_size`` 1).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, WeightedRandomSampler

from nowcast.data.dataset import RadarWindowDataset, window_weights
from nowcast.data.motion_cache import MotionCache, motion_cache_path
from nowcast.data.splits import SPLITS, parse_splits, split_windows, stores_used
from nowcast.data.store import describe_store, open_store
from nowcast.data.windows import Window, build_window_index
from nowcast.schema import timestep
from nowcast.types import GridSpec, WindowSpec, check_counts, repo_root

log = logging.getLogger(__name__)


#: stores whose pixel sizes differ by more than this fraction are on different grids (FMI's
#: projected 2 km pixels measure 1999.35 m)
PIXEL_SIZE_TOLERANCE = 0.01


def check_same_pixel_size(stores: Mapping[str, xr.Dataset]) -> None:
    """Refuse stores of different pixel sizes: every model and score here assumes one grid spacing
    (a 1 km store beside 2 km ones would train motion and structure at twice their scale).

    Raises:
        ValueError: naming each store's pixel size and how to rebuild the odd one.
    """
    sizes = {name: describe_store(ds)["pixel_size_m"] for name, ds in stores.items()}
    known = {name: size for name, size in sizes.items() if np.isfinite(size)}
    if known and max(known.values()) > min(known.values()) * (1 + PIXEL_SIZE_TOLERANCE):
        listed = ", ".join(f"{name} {size:.0f} m" for name, size in sorted(known.items()))
        raise ValueError(f"stores on different pixel sizes ({listed}); rebuild the odd one on the same "
                         "grid (`nowcast ingest`, a store's `coarsen` in configs/ingest/*.yaml)")


def splits_read(stage: str, validates: bool = True) -> tuple[str, ...]:
    """The splits a trainer's ``stage`` reads from :class:`NowcastDataModule` (a fit reads "val" only
    when it ``validates``; predict reads the test windows)."""
    if stage == "fit":
        return ("train", "val") if validates else ("train",)
    return {"validate": ("val",), "test": ("test",), "predict": ("test",)}.get(stage, ())


class NowcastDataModule(L.LightningDataModule):
    """Windows of ``n_in`` past and ``n_out`` future frames from named stores, split by event.

    Args:
        stores: store name -> zarr path (relative paths are under ``store_root``).
        splits: ``{"train" | "val" | "test": [{store, start, end}, ...]}`` (see
            :mod:`nowcast.data.splits`); ``predict`` uses the test events.
        store_root: base of relative store paths; None = the repository root.
        n_in, n_out: past and future frames; stride: step between window starts (frames).
        crop_size: training crop side (px); None = full field.
        eval_crop_size: validation/test crop side (px), centred on the grid; None = full field.
        batch_size, eval_batch_size: per step (eval_batch_size None = batch_size).
        num_workers: DataLoader worker processes (stores open lazily in each).
        with_motion: add ``motion`` (2, h, w) px/step (motion cache if built, else on the fly).
        cached_motion_only: with ``with_motion``, keep only windows whose motion is in the cache
            (for machines without pysteps, e.g. the GPU trainer); dropped windows are logged.
        in_memory: decode the stores (and motion caches) into memory once in ``setup``; the
            radar-mix training stores take about 0.5 GB and loading becomes cheap.
        augment: random flips / quarter turns on training crops.
        samples_per_epoch: training windows drawn per epoch (with replacement, rain-weighted).
        dry_weight: sampling weight added to every window (the floor for dry windows).
        prefer_rainy_crops: training crops prefer rain (False: uniform over covered positions).
        min_wet_fraction: rainy-crop preference (fraction of pixels >= 0.5 mm/h in the crop).
        seed: seeds the training sampler.
    """

    def __init__(
        self,
        stores: dict[str, str],
        splits: dict[str, list[dict[str, str]]],
        store_root: str | None = None,
        n_in: int = 4,
        n_out: int = 12,
        stride: int = 1,
        crop_size: int | None = 128,
        eval_crop_size: int | None = 256,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        with_motion: bool = False,
        cached_motion_only: bool = False,
        in_memory: bool = False,
        augment: bool = True,
        samples_per_epoch: int = 2000,
        dry_weight: float = 0.02,
        prefer_rainy_crops: bool = True,
        min_wet_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        owner = type(self).__name__
        check_counts(owner, n_in=n_in, n_out=n_out, stride=stride, crop_size=crop_size,
                     eval_crop_size=eval_crop_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
                     samples_per_epoch=samples_per_epoch)
        check_counts(owner, minimum=0, num_workers=num_workers)
        self.events = parse_splits(splits)  # no I/O: fail on a bad config at construction
        unknown = stores_used(self.events) - set(stores)
        if unknown:
            raise KeyError(f"splits name stores not in `stores`: {sorted(unknown)}; known: {sorted(stores)}")
        root = Path(store_root) if store_root is not None else repo_root()
        self.store_paths = {name: root / p for name, p in stores.items()}  # an absolute p wins
        self.n_in, self.n_out, self.stride = n_in, n_out, stride
        self.crop_size, self.eval_crop_size = crop_size, eval_crop_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.with_motion, self.augment = num_workers, with_motion, augment
        self.samples_per_epoch, self.dry_weight = samples_per_epoch, dry_weight
        self.prefer_rainy_crops, self.min_wet_fraction, self.seed = prefer_rainy_crops, min_wet_fraction, seed
        self.windows: dict[str, list[Window]] = {}
        self.datasets: dict[str, RadarWindowDataset] = {}
        self._stores: dict[str, xr.Dataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Open the stores and index the windows of every split (once); attached to a trainer, also
        refuse a split the trainer's ``stage`` reads that has no windows (before, not after, the
        first training steps)."""
        if not self.datasets:
            self._build_datasets()
        trainer = getattr(self, "trainer", None)
        if trainer is not None and stage is not None:
            for split in splits_read(stage, validates=bool(trainer.limit_val_batches)):
                self.dataset(split)

    def _build_datasets(self) -> None:
        used = sorted(stores_used(self.events))
        self._stores = {name: open_store(self.store_paths[name]) for name in used}
        check_same_pixel_size(self._stores)
        index = build_window_index(self._stores, self.n_in, self.n_out, self.stride)
        self.windows = split_windows(index, self.events)
        if self.with_motion and self.hparams.cached_motion_only:
            self.windows = {split: self._with_cached_motion(split, w) for split, w in self.windows.items()}
        paths = {name: self.store_paths[name] for name in used}
        for split, windows in self.windows.items():
            train = split == "train"
            self.datasets[split] = RadarWindowDataset(
                paths, windows, self.n_in, self.n_out,
                crop_size=self.crop_size if train else self.eval_crop_size,
                random_crop=train, prefer_rain=self.prefer_rainy_crops, augment=train and self.augment,
                with_motion=self.with_motion, in_memory=self.hparams.in_memory,
                min_wet_fraction=self.min_wet_fraction,
            )

    def store_steps(self) -> dict[str, float]:
        """The time step (min) of each opened store."""
        return {name: float(timestep(ds) / np.timedelta64(1, "m")) for name, ds in self._stores.items()}

    def served(self) -> tuple[WindowSpec, GridSpec]:
        """What this module serves (after :meth:`setup`), what a model trained on it is built for:
        windows of ``n_in`` past and ``n_out`` future frames at the time step of most training
        windows (of most windows when no split trains; the frames of a store of another step, like
        radar-mix's optional 6-min BOM event, are served as steps of that one, which is logged), on
        the pixel size of the store with most of them (all stores share one within
        :data:`PIXEL_SIZE_TOLERANCE`: :func:`check_same_pixel_size`)."""
        if not self._stores:
            raise RuntimeError("call setup() first")
        windows = self.windows.get("train") or [w for split in self.windows.values() for w in split]
        per_store = Counter(w.store for w in windows)
        steps = self.store_steps()
        per_step: Counter[float] = Counter()
        for name, step in steps.items():
            per_step[step] += per_store[name]
        step = max(per_step, key=per_step.__getitem__)
        if sum(1 for n in per_step.values() if n) > 1:
            log.warning("the windows have time steps of %s min (windows per step: %s): a model is trained "
                        "for %g min, the step of most", ", ".join(f"{s:g}" for s in per_step),
                        dict(per_step), step)
        largest = max((name for name in steps if steps[name] == step), key=per_store.__getitem__)
        pixel = describe_store(self._stores[largest])["pixel_size_m"]
        return (WindowSpec(n_in=self.n_in, n_out=self.n_out, timestep_minutes=float(step)),
                GridSpec(pixel_size_m=float(pixel)))

    def _with_cached_motion(self, split: str, windows: list[Window]) -> list[Window]:
        """Keep windows whose anchor is in their store's motion cache (for machines without pysteps)."""
        missing = {id(w) for w in self.without_cached_motion(windows)}
        kept = [w for w in windows if id(w) not in missing]
        if len(kept) < len(windows):
            log.warning("%s: %d of %d windows kept (motion cached); the rest are left out",
                        split, len(kept), len(windows))
        return kept

    def without_cached_motion(self, windows: list[Window]) -> list[Window]:
        """The ``windows`` whose anchor is not in their store's motion cache (``<store>.motion.zarr``,
        built by ``nowcast motion``); every window of a store without a cache."""
        def ns(t: Any) -> np.ndarray:
            return np.asarray(t, dtype="datetime64[ns]").astype(np.int64)

        cached: dict[str, set[int]] = {}
        for name in {w.store for w in windows}:
            cache_path = motion_cache_path(self.store_paths[name])
            cached[name] = set(ns(MotionCache(cache_path).times).tolist()) if cache_path.exists() else set()
        return [w for w in windows if int(ns(w.anchor)) not in cached[w.store]]

    def dataset(self, split: str) -> RadarWindowDataset:
        if not self.datasets:
            raise RuntimeError("call setup() first")
        if split not in self.datasets or not len(self.datasets[split]):
            have = {k: len(v) for k, v in self.datasets.items()}
            raise ValueError(f"split {split!r} has no windows (windows per split: {have}); give it "
                             "events with at least n_in + n_out frames in a row")
        return self.datasets[split]

    def scoring_dataset(self, split: str) -> RadarWindowDataset:
        """The windows of ``split`` served as every split is scored: the fixed centred
        ``eval_crop_size`` window, no flips or turns. For "train" a copy of the training dataset,
        whose random crops and augmentation would give each evaluated model other pixels."""
        dataset = self.dataset(split)
        if split != "train":
            return dataset
        scored = copy.copy(dataset)
        scored.crop_size, scored.random_crop, scored.augment = self.eval_crop_size, False, False
        return scored

    def replace_dataset(self, split: str, dataset: Any) -> None:
        """Serve ``dataset`` for ``split`` instead of the window crops (e.g. a model's precomputed
        inputs). It must hold the same windows in the same order (its ``windows``), so that the
        rain-weighted training sampler still applies."""
        current = self.dataset(split)
        if list(getattr(dataset, "windows", [])) != list(current.windows):
            raise ValueError(f"the replacement {split} dataset must hold the same {len(current)} windows "
                             "in the same order")
        self.datasets[split] = dataset

    def train_weights(self) -> np.ndarray:
        """Sampling weight of each training window (rain fraction + ``dry_weight``)."""
        return window_weights(self._stores, self.dataset("train").windows, self.n_in + self.n_out,
                              self.dry_weight)

    def _loader(self, ds: RadarWindowDataset, batch_size: int, **kw: Any) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(), **kw)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        gen = torch.Generator().manual_seed(self.seed)
        sampler = WeightedRandomSampler(torch.as_tensor(self.train_weights(), dtype=torch.double),
                                        num_samples=self.samples_per_epoch, replacement=True, generator=gen)
        return self._loader(ds, self.batch_size, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def store_range_config(store: str | Path, start: str | None, end: str | None,
                       split: str) -> dict[str, Any]:
    """Init args of :class:`NowcastDataModule` for one store (any ``nowcast ingest`` store) whose
    frames from ``start`` to ``end`` (ISO, UTC; None = open) form the one split ``split``."""
    path = Path(store).resolve()
    name = path.name.split(".")[0] or "store"
    event = {"store": name, **({"start": start} if start else {}), **({"end": end} if end else {})}
    return {"stores": {name: str(path)}, "splits": {split: [event]}}


def load_config(path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Init args of :class:`NowcastDataModule` from a YAML file or dict.

    Accepts the plain init args, ``{class_path, init_args}`` or a full config with a ``data``
    section (as LightningCLI writes). A relative YAML path is tried from the current
    directory, then from the repository root.
    """
    if isinstance(path_or_dict, Mapping):
        cfg: Any = dict(path_or_dict)
    else:
        import yaml

        path = Path(path_or_dict)
        if not path.exists() and not path.is_absolute() and (repo_root() / path).exists():
            path = repo_root() / path
        with open(path) as f:
            cfg = yaml.safe_load(f)
    if isinstance(cfg, Mapping) and "data" in cfg and isinstance(cfg["data"], Mapping):
        cfg = cfg["data"]
    if isinstance(cfg, Mapping) and "init_args" in cfg:
        cfg = cfg["init_args"]
    if not isinstance(cfg, Mapping):
        raise ValueError(f"not a data config: {path_or_dict!r}")
    return dict(cfg)


def from_config(path_or_dict: str | Path | Mapping[str, Any], **overrides: Any) -> NowcastDataModule:
    """Build a :class:`NowcastDataModule` from a YAML file / dict (see :func:`load_config`) plus overrides."""
    return NowcastDataModule(**{**load_config(path_or_dict), **overrides})


__all__ = ["NowcastDataModule", "from_config", "load_config", "SPLITS"]
