"""Conditional diffusion wrapper: owns the schedule, the objective, the loss and sampling.

Model space is ``x = 2 * transform(R) - 1`` in [-1, 1] (``transform`` from
:mod:`nowcast.data.transforms`, default "dbz"). The network is conditioned on the past frames
and, by default, on the semi-Lagrangian extrapolation of the last past frame along the motion
(:func:`nowcast.models.advection.advect`), which hands it the advection it would otherwise
have to learn from a few hundred windows. With ``residual=True`` it diffuses the difference
between the future and that extrapolation (as DiffCast, Yu et al. CVPR 2024, and CasCast,
Gong et al. ICML 2024, diffuse the residual of a deterministic forecast).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from nowcast.data.motion import estimate_motion
from nowcast.data.transforms import RainTransform, build_transform
from nowcast.models.advection import advect
from nowcast.models.diffusion.denoiser import SpatioTemporalTransformer
from nowcast.samplers import SAMPLERS, NoiseSchedule, Sampler, sample
from nowcast.samplers.base import randn_like
from nowcast.types import FUTURE, MASK, MOTION, PAST

#: a network called as ``fn(x_t, t, cond, generator) -> output``; the torch generator seeds any
#: latent noise it draws (an adversarial generator's z)
CondModelFn = Callable[[Tensor, Tensor, Tensor, "torch.Generator | None"], Tensor]

LOSS_WEIGHTINGS = ("none", "min_snr")


def motion_of(past_mm_h: Tensor) -> Tensor:
    """(B, T_in, H, W) mm/h -> (B, 2, H, W) px/step via pysteps (CPU, one element at a time)."""
    frames = past_mm_h.detach().float().cpu().numpy()
    return torch.from_numpy(np.stack([estimate_motion(f) for f in frames])).to(past_mm_h.device)


def latent_model_fn(net: SpatioTemporalTransformer) -> CondModelFn:
    """``fn(x_t, t, cond, generator)`` calling ``net`` with a fresh standard-normal latent per call."""

    def fn(x_t: Tensor, t: Tensor, cond: Tensor, generator: torch.Generator | None) -> Tensor:
        z = randn_like(torch.empty(x_t.shape[0], net.z_dim, device=x_t.device), generator)
        return net(x_t, t, cond, z if net.z_dim > 0 else None)

    return fn


class ConditionalDiffusion(nn.Module):
    """Diffusion over the ``n_out`` future frames given the past (and their extrapolation).

    Args:
        denoiser: the network; ``denoiser.extrapolation`` says whether it is conditioned on
            the extrapolation frames.
        prediction_type: the network's target, "epsilon", "v" or "x0".
        residual: diffuse ``future - extrapolation`` (model space) instead of the future.
        transform: rain transform (name, dict or instance) defining model space.
        n_train_steps: length of the cosine noise schedule.
        loss_weighting: "none" (plain MSE on the target) or "min_snr" (Hang et al. 2023,
            weights clipped at SNR ``min_snr_gamma``, expressed for the chosen target).
        min_snr_gamma: the clipping SNR of "min_snr".
    """

    def __init__(self, denoiser: SpatioTemporalTransformer, prediction_type: str = "v",
                 residual: bool = True, transform: RainTransform | str | dict = "dbz",
                 n_train_steps: int = 1000, loss_weighting: str = "none", min_snr_gamma: float = 5.0) -> None:
        super().__init__()
        if prediction_type not in ("epsilon", "v", "x0"):
            raise ValueError(f"unknown prediction_type {prediction_type!r}; known: epsilon, v, x0")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss_weighting {loss_weighting!r}; known: {LOSS_WEIGHTINGS}")
        self.denoiser = denoiser
        self.prediction_type = prediction_type
        self.residual = residual
        self.transform = build_transform(transform)
        self.schedule = NoiseSchedule.cosine(n_train_steps)
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = min_snr_gamma

    @property
    def n_in(self) -> int:
        return self.denoiser.n_in

    @property
    def n_out(self) -> int:
        return self.denoiser.n_out

    @property
    def use_extrapolation(self) -> bool:
        return self.denoiser.extrapolation

    # --- model space ----------------------------------------------------------------------
    def to_model(self, rain: Tensor) -> Tensor:
        """mm/h -> model space [-1, 1]."""
        return 2.0 * self.transform.forward(rain.float()) - 1.0

    def to_rain(self, x: Tensor) -> Tensor:
        """model space -> mm/h (clipped to the transform's range)."""
        return self.transform.inverse((x.float() + 1.0) / 2.0)

    def prepare(self, past_mm_h: Tensor, motion: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Conditioning and the base the diffused quantity is relative to.

        Args:
            past_mm_h: (B, n_in, H, W) mm/h (finite, >= 0).
            motion: (B, 2, H, W) px/step, or None to estimate it with pysteps (CPU).

        Returns:
            ``cond`` (B, n_in [+ n_out], H, W) model space: the past, then the extrapolation
            frames if the denoiser uses them; ``base`` (B, n_out, H, W) model space: the
            extrapolation when ``residual``, else None.
        """
        if past_mm_h.ndim != 4 or past_mm_h.shape[1] != self.n_in:
            raise ValueError(f"past must be (B, {self.n_in}, H, W), got {tuple(past_mm_h.shape)}")
        cond = self.to_model(past_mm_h)
        if not (self.use_extrapolation or self.residual):
            return cond, None
        if motion is None:
            motion = motion_of(past_mm_h)
        extrap = self.to_model(advect(past_mm_h[:, -1].float(), motion.to(past_mm_h.device), self.n_out))
        if self.use_extrapolation:
            cond = torch.cat([cond, extrap], dim=1)
        return cond, (extrap if self.residual else None)

    # --- training -------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Denoising loss on a batch (keys past, future, mask, optional motion; mm/h).

        The squared error is averaged over covered pixels only (``mask``).
        """
        past, future = batch[PAST], batch[FUTURE][:, : self.n_out]
        if future.shape[1] != self.n_out:
            raise ValueError(f"the model predicts {self.n_out} frames, batch has {batch[FUTURE].shape[1]}")
        cond, base = self.prepare(past, batch.get(MOTION))
        x0 = self.to_model(future)
        if base is not None:
            x0 = x0 - base
        b = x0.shape[0]
        device = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.schedule.n_train_steps, (b,), generator=generator, device=device)
        t = t.to(x0.device)
        noise = randn_like(x0, generator)
        x_t = self.schedule.q_sample(x0, t, noise)
        target = {"epsilon": noise, "x0": x0}.get(self.prediction_type)
        if target is None:
            target = self.schedule.v_target(x0, noise, t)
        out = self.denoiser(x_t, t, cond).float()
        err = (out - target) ** 2 * self._loss_weight(t, x0)
        mask = batch[MASK][:, None].to(err.dtype).expand_as(err) if MASK in batch else torch.ones_like(err)
        return (err * mask).sum() / mask.sum().clamp(min=1.0)

    def _loss_weight(self, t: Tensor, like: Tensor) -> Tensor | float:
        if self.loss_weighting == "none":
            return 1.0
        abar = self.schedule.alpha_bar(t, like)
        snr = abar / (1.0 - abar).clamp(min=1e-12)
        clipped = snr.clamp(max=self.min_snr_gamma)
        # min(SNR, gamma) weights the x0 error; the same weight expressed for each target
        return {"x0": clipped, "epsilon": clipped / snr, "v": clipped / (snr + 1.0)}[self.prediction_type]

    # --- sampling -------------------------------------------------------------------------
    def build_sampler(self, sampler: str | Sampler, **kwargs: object) -> Sampler:
        """A registered sampler on this schedule and objective (``kwargs``: e.g. eta for DDIM)."""
        if isinstance(sampler, Sampler):
            return sampler
        # the residual lies in [-2, 2], the future itself in [-1, 1]
        kwargs.setdefault("clip_x0", 2.0 if self.residual else 1.0)
        return SAMPLERS.build(sampler, schedule=self.schedule, prediction_type=self.prediction_type, **kwargs)

    @torch.no_grad()
    def sample(self, past: Tensor, n_out: int, members: int = 1, sampler: str | Sampler = "ddim",
               n_steps: int = 10, generator: torch.Generator | None = None, motion: Tensor | None = None,
               model_fn: CondModelFn | None = None, **sampler_kwargs: object) -> Tensor:
        """Draw ``members`` forecasts per window in one batched pass.

        Args:
            past: (B, n_in, H, W) mm/h.
            n_out: frames to return (<= the model's ``n_out``; the first ones are kept).
            members: samples per window.
            sampler: a registered sampler name or a :class:`Sampler`.
            n_steps: reverse steps.
            generator: seeds the initial noise and every stochastic step.
            motion: (B, 2, H, W) px/step, or None (pysteps on CPU).
            model_fn: ``fn(x_t, t, cond, generator)`` replacing the denoiser (e.g. an adversarial
                generator, see :func:`latent_model_fn`).
            sampler_kwargs: passed to the sampler's constructor (e.g. ``eta=1.0`` for DDIM).

        Returns:
            (B, members, n_out, H, W) mm/h.
        """
        if not 1 <= n_out <= self.n_out:
            raise ValueError(f"the model forecasts up to {self.n_out} frames, asked for {n_out}")
        b, _, h, w = past.shape
        cond, base = self.prepare(past, motion)
        cond = cond.repeat_interleave(members, dim=0)
        fn = model_fn or (lambda x, t, c, g: self.denoiser(x, t, c))
        x_T = randn_like(torch.empty(b * members, self.n_out, h, w, device=past.device), generator)
        sampler = self.build_sampler(sampler, **sampler_kwargs)
        x0 = sample(lambda x, t: fn(x, t, cond, generator).float(), sampler, x_T, n_steps, generator)
        if base is not None:
            x0 = x0 + base.repeat_interleave(members, dim=0)
        return self.to_rain(x0.clamp(-1.0, 1.0)).reshape(b, members, self.n_out, h, w)[:, :, :n_out]
