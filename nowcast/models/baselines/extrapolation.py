"""Lagrangian extrapolation (pysteps): optical flow + semi-Lagrangian advection of the last frame.

Motion comes from :func:`nowcast.data.motion.estimate_motion` (the package's single motion
estimator); the advection is ``pysteps.extrapolation.semilagrangian``. Rain advected in from
outside the frame is taken as dry (0 mm/h).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from nowcast.data.motion import estimate_motion
from nowcast.models.base import FORECASTERS, Forecaster


class PerSampleForecaster(Forecaster):
    """Base for numpy (pysteps) forecasters that treat each batch element on its own."""

    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        frames = past.detach().cpu().double().numpy()
        out = []
        for sample in frames:
            # one seed per sample, drawn from ``generator`` so that a seeded generator
            # reproduces the whole batch (the default generator otherwise)
            device = generator.device if generator is not None else "cpu"
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
            out.append(self._forecast_one(sample, n_out, members, seed))
        return torch.from_numpy(np.stack(out).astype(np.float32)).to(past.device)

    @abstractmethod
    def _forecast_one(self, past: np.ndarray, n_out: int, members: int, seed: int) -> np.ndarray:
        """(T_in, H, W) mm/h float64 -> (M, T_out, H, W) mm/h."""


@FORECASTERS.register("extrapolation")
class Extrapolation(PerSampleForecaster):
    """Deterministic Lagrangian persistence.

    Args:
        n_in: past frames used for the optical flow (>= 2).
        motion_method: a ``pysteps.motion`` method name.
        interp_order: spline order of the semi-Lagrangian interpolation (1 = bilinear).
    """

    name = "extrapolation"
    deterministic = True

    def __init__(self, n_in: int = 4, motion_method: str = "LK", interp_order: int = 1) -> None:
        super().__init__()
        if n_in < 2:
            raise ValueError("extrapolation needs n_in >= 2 frames to estimate motion")
        self.n_in = n_in
        self.motion_method = motion_method
        self.interp_order = interp_order

    def _forecast_one(self, past: np.ndarray, n_out: int, members: int, seed: int) -> np.ndarray:
        from pysteps.extrapolation import semilagrangian

        motion = estimate_motion(past, method=self.motion_method)
        if not motion.any():  # nothing to track (dry input): advection is the identity
            return np.repeat(past[-1][None, None], n_out, axis=1)
        rain = semilagrangian.extrapolate(
            past[-1], motion.astype(np.float64), n_out, outval=0.0, interp_order=self.interp_order
        )
        return np.asarray(rain)[None]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "pysteps semi-Lagrangian extrapolation of the last frame",
            "motion_method": self.motion_method,
            "interp_order": self.interp_order,
        }
