"""The Forecaster contract: the only thing evaluation, the CLI and the operational job use.

``forecast(past, n_out, members, generator=None, motion=None) -> rain``

- ``past``: (B, T_in, H, W) float tensor, mm/h on the store's grid; NaN where not covered.
- ``motion`` (optional): (B, 2, H, W) motion field [u (+x), v (+y)] in pixels per time step,
  e.g. from a motion cache (:mod:`nowcast.data.motion_cache`). Models that advect
  (``uses_motion``) use it instead of estimating the optical flow themselves, so every model
  of an evaluation can share one motion and the models run where pysteps is not installed;
  the others ignore it.
- returns:  (B, M, T_out, H, W) float32 tensor, mm/h, finite and >= 0, on the same grid
  and device; ``M == members`` for ensemble models, ``M == 1`` for deterministic ones.

Subclasses implement :meth:`Forecaster._forecast`, which receives ``past`` with NaN already
replaced by 0 and ``motion`` checked (or None). Learned forecasters load from checkpoints
(see ``checkpoint.py``) and expose what they were built for through ``window``, ``grid`` and
``transform``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from nowcast.registry import Registry
from nowcast.types import WindowSpec

FORECASTERS: Registry[type[Forecaster]] = Registry("forecaster")


class Forecaster(ABC):
    #: registry name, set by subclasses
    name: str = ""
    #: True if the model always returns one member
    deterministic: bool = True
    #: number of past frames needed (the minimum; extra leading frames are ignored)
    n_in: int = 2
    #: True if the model advects along a motion field (and so uses ``forecast(motion=...)``)
    uses_motion: bool = False

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    @abstractmethod
    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None,
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        """``past`` (B, T_in, H, W) mm/h without NaN (and ``motion`` (B, 2, H, W) px/step or
        None: estimate it) -> (B, M, T_out, H, W) mm/h."""

    def forecast(
        self,
        past: torch.Tensor,
        n_out: int,
        members: int = 1,
        generator: torch.Generator | None = None,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``n_out`` frames; see the module docstring for shapes and units."""
        if past.ndim != 4:
            raise ValueError(f"past must be (B, T_in, H, W), got shape {tuple(past.shape)}")
        if past.shape[1] < self.n_in:
            raise ValueError(f"{self.name} needs {self.n_in} past frames, got {past.shape[1]}")
        if n_out < 1 or members < 1:
            raise ValueError("n_out and members must be >= 1")
        past = torch.nan_to_num(past.float(), nan=0.0).clamp(min=0.0)[:, -self.n_in:]
        b, _, h, w = past.shape
        if motion is not None:
            if tuple(motion.shape) != (b, 2, h, w):
                raise ValueError(f"motion must be (B, 2, H, W) = {(b, 2, h, w)} like past, "
                                 f"got {tuple(motion.shape)}")
            motion = motion.float().to(self.device)
            if not torch.isfinite(motion).all():
                raise ValueError("motion holds NaN or inf")
        with torch.no_grad():
            rain = self._forecast(past.to(self.device), n_out, members, generator, motion)
        expected_m = 1 if self.deterministic else members
        if tuple(rain.shape) != (b, expected_m, n_out, h, w):
            raise RuntimeError(
                f"{self.name} returned {tuple(rain.shape)}, expected {(b, expected_m, n_out, h, w)}"
            )
        return torch.nan_to_num(rain.float(), nan=0.0).clamp(min=0.0)

    def to(self, device: str | torch.device) -> Forecaster:
        """Move learned weights to ``device`` (no-op for models without weights)."""
        self.device = torch.device(device)
        return self

    def describe(self) -> dict[str, Any]:
        """Provenance for forecast files and reports (model name, checkpoint, settings)."""
        return {"model": self.name, "deterministic": self.deterministic, "n_in": self.n_in}


def window_of(forecaster: Forecaster, n_out: int = 12, timestep_minutes: float = 5.0) -> WindowSpec:
    return WindowSpec(n_in=forecaster.n_in, n_out=n_out, timestep_minutes=timestep_minutes)
