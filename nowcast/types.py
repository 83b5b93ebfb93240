"""Shared dataclasses and tensor-shape conventions. No internal imports.

Shape conventions (all rain in mm/h unless a name says otherwise):

- a radar field:            ``(H, W)``, ``y`` rows from north to south as stored, ``x`` columns
- a window of past frames:  ``past``   ``(B, T_in, H, W)``
- the observed future:      ``future`` ``(B, T_out, H, W)``
- a forecast ensemble:      ``rain``   ``(B, M, T_out, H, W)`` (M members, M = 1 if deterministic)
- a coverage mask:          ``mask``   ``(B, H, W)`` bool, True where the radar sees
- a motion field:           ``motion`` ``(B, 2, H, W)`` pixels per time step, (u = +x, v = +y)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Rain rates below this (mm/h) are set to 0 on ingest (DESIGN.md, radar-mix).
RAIN_THRESHOLD_MM_H = 0.1


@dataclass(frozen=True)
class WindowSpec:
    """How many frames a model sees and predicts, and at what time step."""

    n_in: int = 4
    n_out: int = 12
    timestep_minutes: float = 5.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GridSpec:
    """What a model was built for, spatially: pixel size (m) and, if fixed, the frame size."""

    pixel_size_m: float
    height: int | None = None
    width: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def check_counts(owner: str, minimum: int = 1, **counts: int | None) -> None:
    """Refuse a count below ``minimum`` (None: not given, accepted) with a ``ValueError`` naming
    ``owner`` (if not empty), the argument and its value."""
    for name, value in counts.items():
        if value is not None and value < minimum:
            raise ValueError(f"{owner + ': ' if owner else ''}{name} must be >= {minimum}, got {value}")


#: the seeds a torch generator takes (64 bits)
MAX_SEED = 2**64 - 1


def check_seed(seed: int, name: str = "--seed") -> None:
    """Refuse a seed a torch generator cannot take (outside 0..:data:`MAX_SEED`) with a ``ValueError``."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be in 0..{MAX_SEED} (2**64 - 1), got {seed}")


def issue_seed(seed: int, issue_time: Any) -> int:
    """The generator seed of the forecast issued at ``issue_time`` (a datetime64 or naive UTC
    datetime) in a run seeded ``seed``: drawn from both, so that an issue time's members are the
    same whether it is forecast alone, within a batch, in a resumed batch or by ``nowcast operate``,
    and differ from one issue time to the next."""
    import numpy as np

    seconds = int(np.datetime64(issue_time, "s").astype(np.int64))
    digest = hashlib.sha256(f"{seed}:{seconds}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def repo_root() -> Path:
    """The repository root (parent of the ``nowcast`` package)."""
    return Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """Location of the shared data folder (radar files, offline weights).

    ``$NOWCAST_SHARED`` if set, else ``../shared`` beside the repository.
    """
    env = os.environ.get("NOWCAST_SHARED")
    return Path(env) if env else repo_root().parent / "shared"


def radar_dir() -> Path:
    return shared_dir() / "radar"


def weights_dir() -> Path:
    """Offline LPIPS/FID weights: ``$NOWCAST_WEIGHTS`` if set, else ``<shared>/weights``."""
    env = os.environ.get("NOWCAST_WEIGHTS")
    return Path(env) if env else shared_dir() / "weights"


# Keys of the batches that ``nowcast.data`` yields (dicts of tensors, all rain in mm/h with
# NaN replaced by 0 and coverage given by ``mask``):
PAST = "past"  #: (B, T_in, H, W) float32 mm/h
FUTURE = "future"  #: (B, T_out, H, W) float32 mm/h
MASK = "mask"  #: (B, H, W) bool, True where every frame of the window is covered
MOTION = "motion"  #: optional (B, 2, H, W) float32, pixels per time step (u: +x, v: +y)
