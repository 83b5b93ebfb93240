"""Base for forecasters whose weights come from a nowcast checkpoint.

A subclass sets ``name`` (registry name, also the checkpoint's ``forecaster`` field), and
implements ``build_modules(hparams) -> dict[str, nn.Module]`` and ``_forecast``. Loading,
device moves, refusal of checkpoints built for another setup and provenance live here once.
Shipped checkpoints live in ``nowcast/checkpoints/<name>.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nowcast.data.transforms import RainTransform, build_transform
from nowcast.models.base import Forecaster, refuse_unknown_arguments
from nowcast.models.cards import CHECKPOINT_DIR, card_forecast_args, skill_notice
from nowcast.models.checkpoint import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    check_compatible,
    file_sha256,
    load_checkpoint,
)
from nowcast.registry import UnknownNameError
from nowcast.types import GridSpec, WindowSpec

#: ``__init__`` arguments that ``from_checkpoint`` fills from the checkpoint, not the user
FROM_CHECKPOINT = ("modules", "hparams", "transform", "window", "grid", "checkpoint", "checkpoint_path")


class LearnedForecaster(Forecaster):
    def __init__(
        self,
        modules: dict[str, nn.Module],
        hparams: dict[str, Any],
        transform: RainTransform | str | dict = "dbz",
        window: WindowSpec | None = None,
        grid: GridSpec | None = None,
        checkpoint: dict[str, Any] | None = None,
        checkpoint_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.modules = nn.ModuleDict(modules).eval()
        self.hparams = dict(hparams)
        self.transform = build_transform(transform)
        self.window = window or WindowSpec()
        self.grid = grid or GridSpec(pixel_size_m=2000.0)
        self.n_in = self.window.n_in
        self.checkpoint = checkpoint or {}
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        skill_notice(self.checkpoint_path)  # a shipped model below extrapolation says so, once

    # --- to implement -------------------------------------------------------------------
    @classmethod
    def build_modules(cls, hparams: dict[str, Any]) -> dict[str, nn.Module]:
        """Networks from their constructor arguments (the checkpoint's ``hparams``)."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------
    @classmethod
    def default_checkpoint(cls) -> Path:
        return CHECKPOINT_DIR / f"{cls.name}.pt"

    @classmethod
    def weight_files(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> list[Path]:
        """The files ``from_checkpoint(checkpoint, **kwargs)`` reads weights from (without
        loading them), so a stored result can tell whether the weights changed since."""
        return [Path(checkpoint) if checkpoint else cls.default_checkpoint()]

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kwargs: Any) -> LearnedForecaster:
        """Restore from ``path`` (None: the shipped checkpoint); ``kwargs`` go to ``__init__``, over
        the settings the file's model card was scored with (:func:`card_forecast_args`)."""
        path = Path(path) if path else cls.default_checkpoint()
        kwargs = {**card_forecast_args(path), **kwargs}
        ckpt = load_checkpoint(path, forecaster=cls.name)
        modules = cls.build_modules(ckpt["hparams"])
        for key, module in modules.items():
            if key not in ckpt["state_dict"]:
                raise ValueError(f"{path} has no weights for {key!r}")
            module.load_state_dict(ckpt["state_dict"][key])
        return cls(
            modules,
            ckpt["hparams"],
            transform=ckpt["transform"],
            window=WindowSpec(**ckpt["window"]),
            grid=GridSpec(**ckpt["grid"]),
            checkpoint={k: v for k, v in ckpt.items() if k != "state_dict"},
            checkpoint_path=path,
            **kwargs,
        )

    @classmethod
    def check_arguments(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> None:
        """Refuse unknown arguments, missing weight files, and a main checkpoint that is unreadable
        or holds another model (it is read once here, so a run with several models fails early)."""
        refuse_unknown_arguments(cls, kwargs, internal=FROM_CHECKPOINT)
        files = cls.weight_files(checkpoint, **kwargs)
        for path in files[1:]:
            if not path.exists():
                raise CheckpointNotFoundError(f"{cls.name}: weight file not found: {path}")
        ckpt = load_checkpoint(files[0], forecaster=cls.name)
        try:
            cls.check_settings(ckpt["hparams"], **{**card_forecast_args(files[0]), **kwargs})
        except (UnknownNameError, ValueError) as err:
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise ValueError(f"{cls.name}({given}): {err}") from err

    @classmethod
    def check_settings(cls, hparams: dict[str, Any], **kwargs: Any) -> None:
        """Refuse a user setting (``kwargs`` of ``__init__``) that this checkpoint's model cannot
        run with, with ``ValueError`` naming it; reads no weights. ``__init__`` calls it too, so a
        setting is refused the same way before and after loading. The base class has none."""

    def bind(self, window: WindowSpec | None = None, grid: GridSpec | None = None) -> LearnedForecaster:
        """Refuse data this model was not built for (frame count, lead times, time step, pixel size,
        frame size), naming what it was built for and what the data has."""
        try:
            check_compatible({"window": self.window.to_dict(), "grid": self.grid.to_dict(),
                              "transform": self.transform.to_dict()}, window=window, grid=grid)
        except CheckpointMismatchError as err:
            raise CheckpointMismatchError(f"{err}; use data like its training data, or a model trained "
                                          "on data like this") from err
        return self

    def check_fits(self, window: WindowSpec | None = None, grid: GridSpec | None = None) -> None:
        """:meth:`bind` without the result (the name older callers use)."""
        self.bind(window, grid)

    def to(self, device: str | torch.device) -> LearnedForecaster:
        super().to(device)
        self.modules.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(hparams=self.hparams, transform=self.transform.to_dict(),
                    window=self.window.to_dict(), grid=self.grid.to_dict())
        if self.checkpoint_path is not None:
            info["checkpoint"] = str(self.checkpoint_path)
            if self.checkpoint_path.exists():
                info["checkpoint_sha256"] = file_sha256(self.checkpoint_path)
        if "metrics" in self.checkpoint:
            info["checkpoint_metrics"] = self.checkpoint["metrics"]
        notice = skill_notice(self.checkpoint_path)
        if notice:
            info["skill_notice"] = notice
        return info
