"""DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep 2nd-order ODE solver in x0 form."""

from __future__ import annotations

import math

from torch import Generator, Tensor

from nowcast.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("dpmpp_2m")
class DPMSolverPP2MSampler(Sampler):
    """Data-prediction DPM-Solver++ with a 2nd-order multistep correction.

    With ``lambda = log(alpha / sigma)`` and ``h = lambda_s - lambda_t``:
    ``x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D`` where ``D = x0_t`` on the first
    step and ``D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev`` (``r = h_prev / h``) afterwards. The
    final jump to the clean sample (``sigma = 0``, infinite ``h``) returns ``x0_t``.
    """

    summary = "DPM-Solver++ 2M: second-order multistep solver of the probability-flow ODE"

    stochastic = False

    def reset(self) -> None:
        self._prev: tuple[float, Tensor] | None = None  # (lambda, x0) of the previous step

    def _lambda(self, t: int) -> float:
        a = self.alpha_bar(t)
        return 0.5 * math.log(a / (1.0 - a))

    def step(self, model_output: Tensor, t: int, x: Tensor, generator: Generator | None = None) -> Tensor:
        s = self.next_timestep(t)
        x0 = self.predict_x0(model_output, t, x)
        if s < 0:
            self._prev = None
            return x0
        lam_t, lam_s = self._lambda(t), self._lambda(s)
        h = lam_s - lam_t
        d = x0
        if self._prev is not None:
            lam_prev, x0_prev = self._prev
            r = (lam_t - lam_prev) / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        self._prev = (lam_t, x0)
        a_t, a_s = self.alpha_bar(t), self.alpha_bar(s)
        ratio = math.sqrt((1.0 - a_s) / (1.0 - a_t))
        return ratio * x - math.sqrt(a_s) * math.expm1(-h) * d
