"""Lagrangian extrapolation (pysteps): optical flow + semi-Lagrangian advection of the last frame.

Motion comes from :func:`nowcast.data.motion.estimate_motion` (the package's single motion
estimator) unless the caller hands one in (``forecast(..., motion=...)``); the advection is
``pysteps.extrapolation.semilagrangian``. Rain advected in from outside the frame is taken as
dry (0 mm/h).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from nowcast.data.motion import estimate_motion
from nowcast.models.base import FORECASTERS, Forecaster, whole_number


class PerSampleForecaster(Forecaster):
    """Base for numpy (pysteps) forecasters that treat each batch element on its own."""

    uses_motion = True

    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None,
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        frames = past.detach().cpu().double().numpy()
        motions = motion.detach().cpu().double().numpy() if motion is not None else [None] * len(frames)
        out = []
        for sample, sample_motion in zip(frames, motions, strict=True):
            # one seed per sample, drawn from ``generator`` so that a seeded generator
            # reproduces the whole batch (the default generator otherwise)
            device = generator.device if generator is not None else "cpu"
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
            out.append(self._forecast_one(sample, n_out, members, seed, sample_motion))
        return torch.from_numpy(np.stack(out).astype(np.float32)).to(past.device)

    def motion_of(self, past: np.ndarray, motion: np.ndarray | None) -> np.ndarray:
        """The given motion (2, H, W) px/step, or the optical flow of ``past`` (T_in, H, W)."""
        if motion is not None:
            return np.asarray(motion, dtype=np.float64)
        return estimate_motion(past, method=self.motion_method).astype(np.float64)

    @abstractmethod
    def _forecast_one(self, past: np.ndarray, n_out: int, members: int, seed: int,
                      motion: np.ndarray | None) -> np.ndarray:
        """(T_in, H, W) mm/h float64 (and (2, H, W) px/step or None) -> (M, T_out, H, W) mm/h."""


@FORECASTERS.register("extrapolation")
class Extrapolation(PerSampleForecaster):
    """Deterministic Lagrangian persistence.

    Args:
        n_in: past frames used for the optical flow (>= 2).
        motion_method: a ``pysteps.motion`` method name.
        interp_order: spline order of the semi-Lagrangian interpolation, 0..5 (0 = nearest,
            1 = bilinear).
    """

    summary = "pysteps semi-Lagrangian extrapolation of the last scan along the optical flow (the default)"

    name = "extrapolation"
    deterministic = True

    def __init__(self, n_in: int = 4, motion_method: str = "LK", interp_order: int = 1) -> None:
        super().__init__()
        if n_in < 2:
            raise ValueError("extrapolation needs n_in >= 2 frames to estimate motion")
        self.n_in = n_in
        self.motion_method = motion_method
        self.interp_order = whole_number("interp_order", interp_order, 0, 5)  # scipy's spline orders

    def _forecast_one(self, past: np.ndarray, n_out: int, members: int, seed: int,
                      motion: np.ndarray | None) -> np.ndarray:
        from pysteps.extrapolation import semilagrangian

        motion = self.motion_of(past, motion)
        if not motion.any():  # nothing to track (dry input): advection is the identity
            return np.repeat(past[-1][None, None], n_out, axis=1)
        rain = semilagrangian.extrapolate(
            past[-1], motion, n_out, outval=0.0, interp_order=self.interp_order
        )
        return np.asarray(rain)[None]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "pysteps semi-Lagrangian extrapolation of the last frame",
            "motion_method": self.motion_method,
            "interp_order": self.interp_order,
        }
