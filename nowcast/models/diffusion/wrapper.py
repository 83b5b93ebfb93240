"""Conditional diffusion wrapper: owns the schedule, the objective, the loss and sampling.

Model space is ``x = 2 * transform(R) - 1`` in [-1, 1] (``transform`` from
:mod:`nowcast.data.transforms`, default "dbz"). The network is conditioned on the past frames
and, by default, on the semi-Lagrangian extrapolation of the last past frame along the motion
(:func:`nowcast.models.advection.advect`), which hands it the advection it would otherwise
have to learn from a few hundred windows. With ``residual=True`` it diffuses the difference
between the future and that extrapolation (as DiffCast, Yu et al. CVPR 2024, and CasCast,
Gong et al. ICML 2024, diffuse the residual of a deterministic forecast).

Two settings make the residual cheap and safe to learn on a CPU:

- ``coarsen=k`` diffuses the residual on a grid ``k`` times coarser (``k x k`` means of the
  model-space fields; the past and extrapolation conditioning are averaged the same way) and
  adds its bilinear upsampling to the full-resolution extrapolation: the growth, decay and
  displacement errors extrapolation misses are mostly larger than the 2 km pixels, while the
  fine detail comes from the extrapolation. ``k = 4`` cuts the pixels 16-fold.
- ``residual_scale`` divides the residual so that the diffused quantity has about unit
  standard deviation, the scale the noise schedule is designed for (CasCast scales its
  latents by 1/std the same way); the residual of a 5-minute step is small and would otherwise
  be swamped by the noise at every step but the last.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast.data.motion import estimate_motion
from nowcast.data.transforms import RainTransform, build_transform
from nowcast.models.advection import advect
from nowcast.models.diffusion.denoiser import SpatioTemporalTransformer
from nowcast.models.diffusion.hybrid import SpaceTimeUNet
from nowcast.samplers import SAMPLERS, NoiseSchedule, Sampler, sample
from nowcast.samplers.base import randn_like
from nowcast.types import FUTURE, MASK, MOTION, PAST

LOSS_WEIGHTINGS = ("none", "min_snr", "v_min_snr")

#: keys of a precomputed training batch (:meth:`ConditionalDiffusion.diffusion_inputs`): the
#: conditioning (B, C, h, w) and the residual (B, n_out, h, w) before ``residual_scale``
COND, RESIDUAL = "cond", "residual"


def motion_of(past_mm_h: Tensor) -> Tensor:
    """(B, T_in, H, W) mm/h -> (B, 2, H, W) px/step via pysteps (CPU, one element at a time)."""
    frames = past_mm_h.detach().float().cpu().numpy()
    return torch.from_numpy(np.stack([estimate_motion(f) for f in frames])).to(past_mm_h.device)


class ConditionalDiffusion(nn.Module):
    """Diffusion over the ``n_out`` future frames given the past (and their extrapolation).

    Args:
        denoiser: the network; ``denoiser.extrapolation`` says whether it is conditioned on
            the extrapolation frames.
        prediction_type: the network's target, "epsilon", "v" or "x0".
        residual: diffuse ``future - extrapolation`` (model space) instead of the future.
        transform: rain transform (name, dict or instance) defining model space.
        n_train_steps: length of the cosine noise schedule.
        loss_weighting: "none" (plain MSE on the target), "min_snr" (Hang et al. 2023: the x0
            error weighted by the SNR clipped at ``min_snr_gamma``) or "v_min_snr" (the v error,
            i.e. the x0 error weighted by 1 + SNR, with the SNR clipped the same way: every noise
            level keeps at least the plain x0 weight, the low-noise levels that shape a sample's
            detail get up to 1 + gamma); all expressed for the chosen target.
        min_snr_gamma: the clipping SNR of "min_snr" and "v_min_snr".
        coarsen: diffuse on a grid this many times coarser (block means); 1 = full resolution.
            Needs ``residual`` when > 1 (the full-resolution detail comes from the extrapolation).
        residual_scale: the diffused residual is ``(future - extrapolation) / residual_scale``.
        lagrangian_past: condition on the past frames advected along the motion to the last
            one's time (:meth:`aligned_past`) instead of as observed: growth and decay over the past
            15 minutes is then a difference at each pixel rather than something the network has
            to follow along the motion.
    """

    def __init__(self, denoiser: SpatioTemporalTransformer | SpaceTimeUNet, prediction_type: str = "v",
                 residual: bool = True, transform: RainTransform | str | dict = "dbz",
                 n_train_steps: int = 1000, loss_weighting: str = "none", min_snr_gamma: float = 5.0,
                 coarsen: int = 1, residual_scale: float = 1.0, lagrangian_past: bool = False) -> None:
        super().__init__()
        if prediction_type not in ("epsilon", "v", "x0"):
            raise ValueError(f"unknown prediction_type {prediction_type!r}; known: epsilon, v, x0")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss_weighting {loss_weighting!r}; known: {LOSS_WEIGHTINGS}")
        if coarsen < 1 or (coarsen > 1 and not residual):
            raise ValueError(f"coarsen must be >= 1 and needs residual=True when > 1, got {coarsen}")
        if residual_scale <= 0:
            raise ValueError(f"residual_scale must be > 0, got {residual_scale}")
        self.coarsen, self.residual_scale = int(coarsen), float(residual_scale)
        self.lagrangian_past = bool(lagrangian_past)
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

    def to_rain(self, x: Tensor, threshold: bool = True) -> Tensor:
        """model space -> mm/h (clipped to the transform's range; ``threshold=False``: without the
        cut below the ingest threshold, see :meth:`RainTransform.inverse`)."""
        return self.transform.inverse((x.float() + 1.0) / 2.0, threshold=threshold)

    def prepare(self, past_mm_h: Tensor, motion: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Conditioning and the base the diffused quantity is relative to.

        Args:
            past_mm_h: (B, n_in, H, W) mm/h (finite, >= 0).
            motion: (B, 2, H, W) px/step, or None to estimate it with pysteps (CPU).

        Returns:
            ``cond`` (B, n_in [+ n_out], H / coarsen, W / coarsen) model space on the diffusion
            grid: the past (aligned along the motion with ``lagrangian_past``), then the
            extrapolation frames if the denoiser uses them; ``base`` (B, n_out, H, W) model space
            at full resolution: the extrapolation when ``residual``, else None.
        """
        if past_mm_h.ndim != 4 or past_mm_h.shape[1] != self.n_in:
            raise ValueError(f"past must be (B, {self.n_in}, H, W), got {tuple(past_mm_h.shape)}")
        needs_motion = self.use_extrapolation or self.residual or self.lagrangian_past
        if needs_motion and motion is None:
            motion = motion_of(past_mm_h)
        if motion is not None:
            motion = motion.to(past_mm_h.device)
        cond = self.to_model(self.aligned_past(past_mm_h, motion) if self.lagrangian_past else past_mm_h)
        if not (self.use_extrapolation or self.residual):
            return self._pool(cond), None
        extrap = self.to_model(advect(past_mm_h[:, -1].float(), motion, self.n_out))
        if self.use_extrapolation:
            cond = torch.cat([cond, extrap], dim=1)
        return self._pool(cond), (extrap if self.residual else None)

    @staticmethod
    def aligned_past(past_mm_h: Tensor, motion: Tensor) -> Tensor:
        """The past frames (B, n_in, H, W) mm/h advected along ``motion`` (B, 2, H, W) px per step
        to the last one's time (frame i by n_in - 1 - i steps; the last frame as it is): a
        pixel's values across them follow one piece of rain. Rain advected in from outside the
        frame is 0, as in the extrapolation."""
        n_in, field = past_mm_h.shape[1], past_mm_h.float()
        aligned = [advect(field[:, i], motion, n_in - 1 - i)[:, -1] for i in range(n_in - 1)]
        return torch.stack([*aligned, field[:, -1]], dim=1)

    def _pool(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H / coarsen, W / coarsen) block means."""
        return F.avg_pool2d(x, self.coarsen) if self.coarsen > 1 else x

    def motion_on_grid(self, motion: Tensor) -> Tensor:
        """Motion (B, 2, H, W) px per time step -> (B, 2, H / coarsen, W / coarsen) in the
        diffusion grid's cells per time step (block means, divided by ``coarsen``)."""
        return self._pool(motion) / self.coarsen

    def to_diffused(self, x0: Tensor, base: Tensor | None) -> Tensor:
        """Model-space future (B, n_out, H, W) -> the diffused quantity on the diffusion grid."""
        if base is None:
            return x0
        return self._pool(x0 - base) / self.residual_scale

    def from_diffused(self, x: Tensor, base: Tensor | None) -> Tensor:
        """Inverse of :meth:`to_diffused`: the diffused quantity -> model-space future at ``base``'s size."""
        if base is None:
            return x
        x = x * self.residual_scale
        if self.coarsen > 1:
            x = F.interpolate(x, size=base.shape[-2:], mode="bilinear", align_corners=False)
        return base + x

    def rain_on_grid(self, x: Tensor, cond: Tensor, threshold: bool = True) -> Tensor:
        """The diffused quantity ``x`` (B, n_out, h, w) as rain (mm/h) on the diffusion grid: added
        to the extrapolation that ``cond`` (:meth:`prepare`'s) carries, which at ``coarsen`` 1 is
        the forecast itself and otherwise its block means in model space. Needs a residual model
        conditioned on the extrapolation."""
        if not (self.residual and self.use_extrapolation):
            raise ValueError("rain_on_grid needs a residual model conditioned on the extrapolation")
        base = cond[:, self.n_in:self.n_in + self.n_out]
        return self.to_rain(base + x * self.residual_scale, threshold=threshold)

    # --- training -------------------------------------------------------------------------
    def diffusion_inputs(self, past: Tensor, future: Tensor, mask: Tensor | None = None,
                         motion: Tensor | None = None, prepared: tuple[Tensor, Tensor | None] | None = None
                         ) -> tuple[Tensor, Tensor, Tensor | None]:
        """What the denoiser trains on, from a window in mm/h (the costly, data-only part).

        Args:
            past: (B, n_in, H, W), future: (B, >= n_out, H, W) mm/h; mask: (B, H, W) bool
            coverage; motion: (B, 2, H, W) px/step or None (pysteps).
            prepared: :meth:`prepare`'s output for this past and motion when the caller already has
                it (its extrapolation is the costly part), else computed here.

        Returns:
            ``cond`` (B, C, h, w) as :meth:`prepare`; ``residual`` (B, n_out, h, w), the
            diffused quantity *before* division by ``residual_scale`` (so a stored copy stays
            valid for any scale); ``covered`` (B, h, w) bool, cells whose every pixel is covered
            (None without ``mask``). ``h, w`` = the diffusion grid (H, W over ``coarsen``).
        """
        future = future[:, : self.n_out]
        if future.shape[1] != self.n_out:
            raise ValueError(f"the model predicts {self.n_out} frames, the window has {future.shape[1]}")
        cond, base = self.prepare(past, motion) if prepared is None else prepared
        x0 = self.to_model(future)
        residual = x0 if base is None else self._pool(x0 - base)
        covered = None if mask is None else self._pool(mask[:, None].float())[:, 0] > 0.999
        return cond, residual, covered

    def training_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(cond, x0, covered)`` of a training batch on the diffusion grid, ``x0`` being the
        diffused quantity itself (divided by ``residual_scale``). The batch is a window (keys past,
        future, mask, optional motion; mm/h) or its precomputed :meth:`diffusion_inputs` (keys
        :data:`COND`, :data:`RESIDUAL`, mask on the diffusion grid)."""
        if RESIDUAL in batch:
            cond, x0, covered = batch[COND], batch[RESIDUAL], batch.get(MASK)
        else:
            cond, x0, covered = self.diffusion_inputs(batch[PAST], batch[FUTURE], batch.get(MASK),
                                                      batch.get(MOTION))
        return cond, (x0 / self.residual_scale if self.residual else x0), covered

    def training_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Denoising loss on a batch (see :meth:`training_inputs`), averaged over covered cells."""
        cond, x0, covered = self.training_inputs(batch)
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
        mask = torch.ones_like(err) if covered is None else covered[:, None].to(err.dtype).expand_as(err)
        return (err * mask).sum() / mask.sum().clamp(min=1.0)

    def _loss_weight(self, t: Tensor, like: Tensor) -> Tensor | float:
        if self.loss_weighting == "none":
            return 1.0
        abar = self.schedule.alpha_bar(t, like)
        snr = abar / (1.0 - abar).clamp(min=1e-12)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.loss_weighting == "v_min_snr":
            clipped = clipped + 1.0
        # ``clipped`` weights the x0 error; the same weight expressed for each target
        return {"x0": clipped, "epsilon": clipped / snr, "v": clipped / (snr + 1.0)}[self.prediction_type]

    # --- sampling -------------------------------------------------------------------------
    def build_sampler(self, sampler: str | Sampler, **kwargs: object) -> Sampler:
        """A registered sampler on this schedule and objective; ``kwargs`` go to its constructor
        (e.g. ``eta`` for DDIM, ``generator`` for the adversarial sampler)."""
        if isinstance(sampler, Sampler):
            return sampler
        # the residual lies in [-2, 2] (divided by its scale), the future itself in [-1, 1]
        kwargs.setdefault("clip_x0", 2.0 / self.residual_scale if self.residual else 1.0)
        return SAMPLERS.build(sampler, schedule=self.schedule, prediction_type=self.prediction_type, **kwargs)

    @torch.no_grad()
    def sample(self, past: Tensor, n_out: int, members: int = 1, sampler: str | Sampler = "ddim",
               n_steps: int = 10, generator: torch.Generator | None = None, motion: Tensor | None = None,
               **sampler_kwargs: object) -> Tensor:
        """Draw ``members`` forecasts per window in one batched pass.

        Args:
            past: (B, n_in, H, W) mm/h.
            n_out: frames to return (<= the model's ``n_out``; the first ones are kept).
            members: samples per window.
            sampler: a registered sampler name or a :class:`Sampler`; it decides which network
                each step calls (:meth:`Sampler.network`: the denoiser, or its own).
            n_steps: reverse steps.
            generator: seeds the initial noise, every stochastic step and any latent a network draws.
            motion: (B, 2, H, W) px/step, or None (pysteps on CPU).
            sampler_kwargs: passed to the sampler's constructor (e.g. ``eta=1.0`` for DDIM).

        Returns:
            (B, members, n_out, H, W) mm/h.
        """
        if not 1 <= n_out <= self.n_out:
            raise ValueError(f"the model forecasts up to {self.n_out} frames, asked for {n_out}")
        b, _, h, w = past.shape
        x0, base = self.sample_diffused(past, members, sampler, n_steps, generator, motion, **sampler_kwargs)
        x0 = self.from_diffused(x0, None if base is None else base.repeat_interleave(members, dim=0))
        return self.to_rain(x0.clamp(-1.0, 1.0)).reshape(b, members, self.n_out, h, w)[:, :, :n_out]

    @torch.no_grad()
    def sample_diffused(self, past: Tensor, members: int = 1, sampler: str | Sampler = "ddim",
                        n_steps: int = 10, generator: torch.Generator | None = None,
                        motion: Tensor | None = None,
                        **sampler_kwargs: object) -> tuple[Tensor, Tensor | None]:
        """The sampled diffused quantity itself, before it meets its base (see :meth:`sample`).

        Returns:
            ``x0`` (B * members, n_out, h, w) on the diffusion grid, members of one window
            adjacent (the residual divided by ``residual_scale`` for a residual model), and
            ``base`` (B, n_out, H, W) model space, the extrapolation it is added to (None
            without ``residual``).
        """
        b, _, h, w = past.shape
        if h % self.coarsen or w % self.coarsen:
            raise ValueError(f"frame {h}x{w} is not a multiple of coarsen={self.coarsen}")
        cond, base = self.prepare(past, motion)
        cond = cond.repeat_interleave(members, dim=0)
        shape = (b * members, self.n_out, *cond.shape[-2:])
        x_T = randn_like(torch.empty(shape, device=past.device), generator)
        sampler = self.build_sampler(sampler, **sampler_kwargs)
        fn = sampler.network(lambda x, t, c, g: self.denoiser(x, t, c))
        x0 = sample(lambda x, t: fn(x, t, cond, generator).float(), sampler, x_T, n_steps, generator,
                    progress=None)  # a bar on a terminal: an ensemble on a big grid takes minutes
        return x0, base

    @property
    def size_multiple(self) -> int:
        """Frame sizes this model runs on are multiples of this (pad others, see the forecaster)."""
        return self.coarsen * self.denoiser.size_multiple
