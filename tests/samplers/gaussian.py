"""A toy problem with a known answer: data x0 ~ N(mu, s^2) per element.

Then ``x_t = a x0 + sig e`` is Gaussian too and the exact posterior of x0 is
``p(x0 | x_t) = N(mu + a s^2 (x_t - a mu) / (a^2 s^2 + sig^2), s^2 sig^2 / (a^2 s^2 + sig^2))``
with ``a = sqrt(abar_t)``, ``sig = sqrt(1 - abar_t)``; its mean is the ideal denoiser.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nowcast.samplers import NoiseSchedule


class GaussianOracle:
    """Ideal model for N(mu, s^2) data: ``__call__(x_t, t)`` returns E[x0|x_t] as ``prediction_type``.

    With ``sample_x0=True`` it returns a draw from p(x0 | x_t) instead (a perfect DDGAN generator).
    Counts its calls in ``n_calls``.
    """

    def __init__(self, schedule: NoiseSchedule, mu: float, s: float, prediction_type: str = "v",
                 sample_x0: bool = False, generator: torch.Generator | None = None) -> None:
        self.abar = schedule.alphas_cumprod
        self.mu, self.s = mu, s
        self.prediction_type = prediction_type
        self.sample_x0 = sample_x0
        self.generator = generator
        self.n_calls = 0

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.n_calls += 1
        abar = self.abar[t].to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        a, sig = abar.sqrt(), (1 - abar).sqrt()
        denom = a**2 * self.s**2 + sig**2
        x0 = self.mu + a * self.s**2 * (x_t - a * self.mu) / denom
        if self.sample_x0:
            std = (self.s**2 * sig**2 / denom).sqrt()
            x0 = x0 + std * torch.randn(x_t.shape, generator=self.generator, dtype=x_t.dtype)
        eps = (x_t - a * x0) / sig
        return {"x0": x0, "epsilon": eps, "v": a * eps - sig * x0}[self.prediction_type]
