"""Adversarial large-step sampler (Denoising Diffusion GAN, Xiao et al., ICLR 2022).

A generator ``G(x_t, t, cond, z)`` predicts the clean sample from a noisy one and a latent
``z`` (the model function draws ``z``, and the spatial latent maps of a generator that has
them: :func:`draw_latents`); ``x_s`` is then drawn from the diffusion posterior
``q(x_s | x_t, x0_hat)`` between large steps. Because the generator's prediction is a sample
(not a mean) of ``p(x0 | x_t)``, a few steps (1, 2, 4) reproduce the data distribution
where ancestral sampling with a mean predictor would need hundreds.

The generator is trained against a discriminator (the DDGAN objective) or with a proper scoring
rule (fair CRPS), both by :class:`~nowcast.training.adversarial_task.AdversarialTask`; either way
it is initialised from the trained denoiser, so its raw output keeps the
denoiser's ``prediction_type`` and is turned into ``x0_hat`` with the schedule. The sampler owns
the generator and how it is called (:meth:`AdversarialSampler.network`): whoever samples calls it
as any other sampler.
"""

from __future__ import annotations

import torch
from torch import Generator, Tensor, nn

from nowcast.samplers.base import SAMPLERS, CondModelFn, randn_like
from nowcast.samplers.ddpm import DDPMSampler
from nowcast.samplers.schedules import NoiseSchedule

#: step counts an adversarial generator is trained for (its checkpoint records which one)
ADVERSARIAL_STEPS = (1, 2, 4)


def draw_latents(net: nn.Module, x_t: Tensor, generator: Generator | None = None) -> dict[str, Tensor]:
    """Fresh standard-normal latents for one call of a generator: ``z`` (B, z_dim) when it has
    ``z_dim``, ``noise`` (B, noise_maps, H, W) when it has ``noise_maps``; as keyword arguments."""
    latents = {}
    if getattr(net, "z_dim", 0) > 0:
        latents["z"] = randn_like(torch.empty(x_t.shape[0], net.z_dim, device=x_t.device), generator)
    if getattr(net, "noise_maps", 0) > 0:
        latents["noise"] = randn_like(torch.empty(x_t.shape[0], net.noise_maps, *x_t.shape[-2:],
                                                  device=x_t.device), generator)
    return latents


@SAMPLERS.register("adversarial")
class AdversarialSampler(DDPMSampler):
    """The posterior step of :class:`DDPMSampler` over ``n in ADVERSARIAL_STEPS`` large steps, with
    "trailing" spacing: ``n`` steps of ``T/n`` training steps each (4 steps: 999, 749, 499, 249)."""

    summary = "Denoising-Diffusion-GAN large steps (1, 2 or 4) with an adversarially trained generator"
    own_network = True

    def __init__(self, schedule: NoiseSchedule, prediction_type: str = "v", clip_x0: float | None = None,
                 timestep_spacing: str = "trailing", max_steps: int = max(ADVERSARIAL_STEPS),
                 generator: nn.Module | None = None) -> None:
        """``generator``: the trained network ``G(x_t, t, cond, z)`` with a ``z_dim`` attribute (None
        while it is being trained: :meth:`network` then refuses)."""
        super().__init__(schedule, prediction_type, clip_x0, timestep_spacing)
        self.max_steps = max_steps
        self.generator = generator

    def network(self, denoiser: CondModelFn) -> CondModelFn:
        """The generator with a fresh standard-normal latent ``z`` per call, seeded by the sampling
        generator (the denoiser is not used)."""
        net = self.generator
        if net is None:
            raise ValueError("the adversarial sampler needs its trained generator "
                             "(configs/train/adversarial.yaml trains one)")

        def fn(x_t: Tensor, t: Tensor, cond: Tensor, generator: Generator | None) -> Tensor:
            return net(x_t, t, cond, **draw_latents(net, x_t, generator))

        return fn

    def set_timesteps(self, n: int) -> None:
        if not 1 <= n <= self.max_steps:
            raise ValueError(
                f"the adversarial sampler takes 1..{self.max_steps} large steps (trained for "
                f"{ADVERSARIAL_STEPS}), got {n}"
            )
        super().set_timesteps(n)
