"""Ancestral sampling (DDPM, Ho et al. 2020) over any subset of the training steps."""

from __future__ import annotations

from torch import Generator, Tensor

from nowcast.samplers.base import SAMPLERS, Sampler, randn_like


@SAMPLERS.register("ddpm")
class DDPMSampler(Sampler):
    """``x_s ~ q(x_s | x_t, x0_hat)``: with ``n = n_train_steps`` this is exactly DDPM (variance
    beta-tilde); with fewer steps it is the same posterior between the chosen steps."""

    summary = "DDPM ancestral sampling (the full schedule, or its posterior between spaced steps)"

    def step(self, model_output: Tensor, t: int, x: Tensor, generator: Generator | None = None) -> Tensor:
        s = self.next_timestep(t)
        x0 = self.predict_x0(model_output, t, x)
        if s < 0:
            return x0
        mean, variance = self.schedule.posterior(x0, x, t, s)
        return mean + variance.sqrt() * randn_like(x, generator)
