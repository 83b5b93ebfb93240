"""DDIM (Song et al., ICLR 2021): any step count; ``eta`` scales the stochasticity."""

from __future__ import annotations

import math

from torch import Generator, Tensor

from nowcast.samplers.base import SAMPLERS, Sampler, randn_like
from nowcast.samplers.schedules import NoiseSchedule


@SAMPLERS.register("ddim")
class DDIMSampler(Sampler):
    """``x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z`` with
    ``sigma^2 = eta^2 (1 - abar_s)/(1 - abar_t) (1 - abar_t/abar_s)`` (eq. 12/16 of the paper).
    ``eta = 0``: deterministic (probability-flow); ``eta = 1``: the DDPM posterior."""

    summary = "DDIM: deterministic (eta=0) or stochastic large steps"

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "v", eta: float = 0.0,
                 clip_x0: float | None = None, timestep_spacing: str = "trailing") -> None:
        super().__init__(schedule, prediction_type, clip_x0, timestep_spacing)
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = eta
        self.stochastic = eta > 0

    def step(self, model_output: Tensor, t: int, x: Tensor, generator: Generator | None = None) -> Tensor:
        s = self.next_timestep(t)
        x0 = self.predict_x0(model_output, t, x)
        if s < 0:
            return x0
        # eps consistent with the (possibly clipped) x0, as in the DDIM paper's implementation
        a_t, a_s = self.alpha_bar(t), self.alpha_bar(s)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)
        sigma2 = self.eta**2 * (1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s)
        x_s = math.sqrt(a_s) * x0 + math.sqrt(max(1.0 - a_s - sigma2, 0.0)) * eps
        if sigma2 > 0:
            x_s = x_s + math.sqrt(sigma2) * randn_like(x, generator)
        return x_s
