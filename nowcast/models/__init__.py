"""Forecasters: the :class:`~nowcast.models.base.Forecaster` contract, baselines and the
diffusion model. ``load_forecaster`` is the one way to get a model by name."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from nowcast.models.base import FORECASTERS, Forecaster

__all__ = ["FORECASTERS", "Forecaster", "load_forecaster", "import_all", "weight_files"]


def import_all() -> None:
    """Import every module below ``nowcast.models`` so that all forecasters are registered."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)


def load_forecaster(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> Forecaster:
    """Build forecaster ``name``; learned models load ``checkpoint`` (or their shipped default).

    Classes that load weights define ``from_checkpoint(path, **kwargs)``.
    """
    import_all()
    cls = FORECASTERS.get(name)
    if hasattr(cls, "from_checkpoint"):
        return cls.from_checkpoint(checkpoint, **kwargs)
    if checkpoint is not None:
        raise ValueError(f"forecaster {name!r} takes no checkpoint")
    return cls(**kwargs)


def weight_files(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> list[Path]:
    """The checkpoint files ``load_forecaster(name, checkpoint, **kwargs)`` would read ([] for
    models without weights), found without loading them."""
    import_all()
    cls = FORECASTERS.get(name)
    return cls.weight_files(checkpoint, **kwargs) if hasattr(cls, "weight_files") else []
