"""The radar-mix windows the diagnostics score, as the committed reports score them (not a script).

Every diagnostic under ``benchmarks/diag_*.py`` reads its windows here, so they all see the same
256x256 centre crops with the motion cache's motion, one window per item.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from nowcast.data.datamodule import from_config
from nowcast.models.base import Forecaster
from nowcast.types import GridSpec, WindowSpec, repo_root

#: the radar-mix stores: 4 past frames, 12 lead times of 5 min, 2 km pixels
RADAR_MIX_WINDOW = WindowSpec(n_in=4, n_out=12, timestep_minutes=5.0)
RADAR_MIX_GRID = GridSpec(pixel_size_m=2000.0)
#: the benchmark's data config, relative to the repository root
RADAR_MIX_DATA = "configs/data/radar-mix.yaml"


def scoring_windows(split: str, data: str = RADAR_MIX_DATA, stride: int = 1) -> Dataset:
    """Every window of ``split`` ("val", "test" or "train") of the data config ``data`` (relative
    to the repository root): items with past, future, mask and motion, 256x256 centre crops.
    "train" serves the training windows as the held-out ones are served (centre crop, no flips or
    turns), to tell a fit that does not generalise from one that does not learn. ``stride``: frames
    between window starts (as ``nowcast evaluate --stride``)."""
    if split not in ("val", "test", "train"):
        raise SystemExit(f"split must be 'val', 'test' or 'train', got {split!r}")
    dm = from_config(repo_root() / data, with_motion=True, cached_motion_only=True,
                     eval_crop_size=256, eval_batch_size=1, stride=stride)
    dm.setup({"val": "validate", "test": "test", "train": "fit"}[split])
    return dm.scoring_dataset(split)


def bind_radar_mix(*models: Forecaster) -> None:
    """Bind forecasters to the radar-mix window and grid (a checkpoint built for others refuses)."""
    for model in models:
        model.bind(RADAR_MIX_WINDOW, RADAR_MIX_GRID)
