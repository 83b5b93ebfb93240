"""The large-step stage: a generator that samples ``p(x0 | x_t)`` at a few large timesteps.

Two objectives train the same generator for the same "adversarial" sampler: the Denoising
Diffusion GAN's (``objective="gan"``, Xiao et al., ICLR 2022), and a proper scoring rule
(``objective="crps"``: the fair CRPS of a few generator samples against the true ``x0``, pixel by
pixel, in the diffused residual's units or, with ``crps_space="rain"``, in mm/h once added to the
extrapolation, optionally after each sample's random motion error as the forecast draws it, as in
distributional diffusion models trained with scoring rules, De Bortoli et al. 2025, and
CRPS-trained weather ensembles such as AIFS-CRPS). The scoring rule needs no discriminator; its
minimum is the true conditional distribution, so it rewards spread exactly where the data has
it, which the GAN does not guarantee (it tends to collapse onto few samples).

The GAN stage, in detail:

Starting from a trained conditional diffusion model, a generator ``G(x_t, t, cond, z)`` (the
denoiser with a latent input ``z``, zero-initialised so that it starts as the trained
denoiser) learns to sample ``p(x0 | x_t)`` at the ``steps`` (1, 2 or 4) large timesteps of the
"adversarial" sampler instead of predicting its mean, so that ``x_s ~ q(x_s | x_t, G(...))``
between large steps reproduces the data distribution. A conditional discriminator
``D(x_s, x_t, t, cond)`` judges real pairs (``x_s ~ q(x_s | x0)``, ``x_t ~ q(x_t | x_s)``)
against generated ones; non-saturating GAN loss, R1 penalty on real samples (Mescheder et
al. 2018) and an optional masked x0 reconstruction term. Manual optimisation (two optimisers).

The export (:meth:`AdversarialTask.export`) is a nowcast checkpoint with forecaster
"diffusion-adversarial", ``hparams["generator"]`` (network arguments with ``z_dim``),
``hparams["steps"]`` and ``state_dict["generator"]``; the diffusion forecaster loads it with
``sampler="adversarial", sampler_checkpoint=path`` on top of the same diffusion checkpoint (the
adversarial sampler owns the generator and calls it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nowcast.evaluation.crps import crps_ensemble
from nowcast.models.checkpoint import file_sha256
from nowcast.models.diffusion.discriminator import Discriminator
from nowcast.models.diffusion.forecaster import DiffusionForecaster
from nowcast.models.diffusion.networks import Denoiser, build_denoiser
from nowcast.models.diffusion.settings import WRAPPER_KEYS
from nowcast.models.diffusion.wrapper import RESIDUAL, ConditionalDiffusion
from nowcast.models.perturbation import bps_displacements, displace, read_inside_frame
from nowcast.models.spec import ModelSpec
from nowcast.samplers.adversarial import ADVERSARIAL_STEPS, draw_latents
from nowcast.samplers.base import randn_like
from nowcast.training.baseline_tasks import masked_mean
from nowcast.training.prepared import EXTRAPOLATION, FULL_MASK, PreparedResiduals, prepared_inputs
from nowcast.training.task import DATA_QUANTITIES, ForecastTask, trained_model
from nowcast.types import FUTURE, MASK, MOTION, PAST, RAIN_THRESHOLD_MM_H


class IssuedTruth(NamedTuple):
    """The full-resolution fields a forecast as issued is scored against (``crps_space="issued"``):
    ``base`` (B, n_out, H, W) the extrapolation in model space, ``future`` (B, n_out, H, W) mm/h
    (dry below the ingest threshold), ``covered`` (B, H, W) bool or None."""

    base: Tensor
    future: Tensor
    covered: Tensor | None


def covered_mean(values: Tensor, covered: Tensor | None) -> Tensor:
    """Mean of ``values`` (B, T, H, W) over the cells ``covered`` (B, H, W) marks (all when None)."""
    return values.mean() if covered is None else masked_mean(values, covered[:, None].to(values.dtype))


ADVERSARIAL_FORECASTER = "diffusion-adversarial"
#: the generator's training objectives (see the module docstring)
OBJECTIVES = ("gan", "crps")
#: where the "crps" objective compares samples with the truth: the diffused quantity (the scaled
#: residual), rain in mm/h on the diffusion grid (residual added to the extrapolation), or rain in
#: mm/h as the forecast issues it, at the full resolution (the residual upsampled onto the
#: full-resolution extrapolation; the same as "rain" without a coarse grid)
CRPS_SPACES = ("diffused", "rain", "issued")
#: the spaces that score rain (the residual added to the extrapolation)
RAIN_SPACES = ("rain", "issued")
#: the sampler this stage trains the network of
ADVERSARIAL = "adversarial"


def generator_hparams(net_hparams: dict[str, Any], z_dim: int, noise_maps: int = 0) -> dict[str, Any]:
    """The generator's network arguments: the denoiser's plus its latents (``noise_maps`` only
    when used: the patch Transformer has none)."""
    return {**net_hparams, "z_dim": z_dim, **({"noise_maps": noise_maps} if noise_maps else {})}


def init_generator(denoiser: Denoiser, net_hparams: dict[str, Any], z_dim: int,
                   noise_maps: int = 0) -> Denoiser:
    """A copy of ``denoiser`` with a ``z_dim`` latent input (and ``noise_maps`` spatial latent
    maps) whose weights are zero: at initialisation it computes exactly the denoiser's output
    for any latent."""
    if z_dim < 1:
        raise ValueError(f"the generator needs a latent (z_dim >= 1), got {z_dim}")
    if noise_maps and net_hparams.get("architecture", "transformer") != "hybrid":
        raise ValueError("noise_maps needs the 'hybrid' denoiser")
    gen = build_denoiser(generator_hparams(net_hparams, z_dim, noise_maps))
    state = dict(denoiser.state_dict())
    if noise_maps:  # the stem takes the noise maps as extra inputs, their weights zero
        stem = gen.stem.weight.detach().clone().zero_()
        stem[:, :state["stem.weight"].shape[1]] = state["stem.weight"]
        state["stem.weight"] = stem
    missing, unexpected = gen.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"z_proj.weight", "z_proj.bias"}:
        raise ValueError(f"denoiser does not fit the generator: missing {missing}, unexpected {unexpected}")
    return gen


def freeze_all_but(network: torch.nn.Module, trainable: list[str], owner: str) -> None:
    """Freeze every parameter of ``network`` except those under the top-level names (modules or
    parameters) in ``trainable``; refuse a name that holds no parameter (a typo would silently
    train nothing)."""
    top = lambda name: name.split(".", 1)[0]  # noqa: E731
    holders = {top(name) for name, _ in network.named_parameters()}
    unknown = sorted(set(trainable) - holders)
    if unknown or not trainable:
        raise ValueError(f"{owner}: trainable must name modules of the generator, "
                         f"got {unknown or trainable}; known: {', '.join(sorted(holders))}")
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(top(name) in trainable)


class AdversarialTask(ForecastTask):
    """Train the adversarial large-step generator on top of a trained diffusion checkpoint.

    Args:
        model: the model whose sampler this trains, as ``nowcast forecast`` would sample it:
            ``{name: diffusion, checkpoint: <base>, args: {sampler: adversarial, steps: K,
            sampler_checkpoint: <generator>}}`` (:class:`~nowcast.models.spec.ModelSpec`).
            ``checkpoint`` is the exported diffusion model whose window, grid, transform,
            objective and network sizes are reused; ``steps`` the large steps K in (1, 2, 4) (the
            generator is trained at the timesteps of the "adversarial" sampler with K steps and
            must be sampled with K; default 4); ``sampler_checkpoint`` an adversarial file of the
            same sizes and step count whose generator starts this fit (the discriminator starts
            afresh; the task's ``init_from``, see :class:`ForecastTask`).
        objective: "gan" (the discriminator's verdict) or "crps" (a proper scoring rule, no
            discriminator; see the module docstring).
        crps_space: what the "crps" objective scores: "diffused" (the scaled residual, every cell
            alike) or "rain" (mm/h on the diffusion grid, the residual added to the extrapolation:
            the units the forecast is verified in, where an error in heavy rain weighs more than
            light rain added to a dry cell; 2 km with a folded, full-resolution residual; the rain
            as issued, dry below 0.1 mm/h: :meth:`verified_rain`) or "issued" (the same rain at the
            full resolution, as ``nowcast forecast`` composes it: on a coarse grid the residual
            upsampled onto the full-resolution extrapolation; needs ``precompute`` to keep the
            full-resolution fields, 2.7 GB in all for radar-mix).
        crps_members: generator samples per window scored together ("crps"; the fair CRPS's
            variance falls with more, its cost grows in proportion).
        verified_members: the ensemble size the forecast is verified with: the samples are scored
            with the CRPS expected of an ensemble of this many members (the fair CRPS with its
            spread term times 1 - 1/K, :func:`~nowcast.evaluation.crps.crps_ensemble`), whose best
            members spread less than the true distribution; None: the distribution's own CRPS.
        motion_perturbation: with ``crps_space`` "rain" or "issued", each sample is first displaced by its own
            BPS motion error of this size relative to STEPS' (as the diffusion forecaster's
            ``motion_perturbation`` displaces its members; cells read from beyond the crop are left
            out), so the generator learns the residual that the perturbed ensemble lacks. Needs the
            one-step generator (``steps: 1``: the displacement comes after the whole sampling
            chain) and the batch's motion (0 = off).
        trainable: the generator's top-level modules that are trained (e.g. ``[z_proj, stem,
            out]``: the latent injection, the input and the output convolutions); the rest keeps
            its starting weights. Limits what a generator can memorise of a few training events;
            None: every module.
        z_dim: latent size of the generator.
        noise_maps: spatial latent maps of the generator ("hybrid" denoiser only; 0 = none).
        disc_channels, disc_depth: discriminator width and number of down-sampling blocks ("gan").
        r1_gamma: weight of the R1 penalty ``gamma/2 E||grad_x D(x_real)||^2`` ("gan").
        lambda_rec: weight of the masked MSE between the generator's x0 and the true x0
            (0 = the pure GAN objective of the paper; "gan").
        lr_g, lr_d, betas: Adam for the generator and the discriminator (``lr_d``: "gan" only).
        grad_clip: gradient-norm clipping of both (0 = off); manual optimisation does it itself.
        val_members: ensemble members per validation window.
        precompute: train on precomputed diffusion inputs (extrapolation, residual, coarse grid)
            of the training windows, as the CPU diffusion recipe does
            (:class:`~nowcast.training.prepared.PreparedResiduals`).
        time_reversal: with ``precompute``, serve each training window played backwards half the
            time (:class:`~nowcast.training.prepared.PreparedResiduals`' ``time_reversal``; its
            motion estimated with pysteps once per window, about a second each on a 2-core CPU).
    """

    def __init__(self, model: ModelSpec, objective: str = "gan", crps_space: str = "diffused",
                 crps_members: int = 2, verified_members: int | None = None,
                 motion_perturbation: float = 0.0, trainable: list[str] | None = None, z_dim: int = 64,
                 noise_maps: int = 0, disc_channels: int = 64, disc_depth: int = 3,
                 r1_gamma: float = 0.1, lambda_rec: float = 0.0, lr_g: float = 5e-5, lr_d: float = 1e-4,
                 betas: tuple[float, float] = (0.5, 0.9), grad_clip: float = 1.0, val_members: int = 1,
                 precompute: bool = False, time_reversal: bool = False) -> None:
        task = type(self).__name__
        if time_reversal and not precompute:
            raise ValueError(f"{task}: time_reversal plays the precomputed windows backwards: "
                             "it needs precompute")
        if objective not in OBJECTIVES:
            raise ValueError(f"{task}: objective must be one of {OBJECTIVES}, got {objective!r}")
        if crps_space not in CRPS_SPACES:
            raise ValueError(f"{task}: crps_space must be one of {CRPS_SPACES}, got {crps_space!r}")
        if crps_members < 2:
            raise ValueError(f"{task}: crps_members must be >= 2, got {crps_members}")
        if verified_members is not None and verified_members < 1:
            raise ValueError(f"{task}: verified_members must be >= 1 or null, got {verified_members}")
        if not 0.0 <= float(motion_perturbation) < float("inf"):
            raise ValueError(f"{task}: motion_perturbation must be a finite number >= 0, "
                             f"got {motion_perturbation!r}")
        if motion_perturbation > 0 and (objective != "crps" or crps_space not in RAIN_SPACES):
            raise ValueError(f"{task}: motion_perturbation needs objective 'crps' with crps_space "
                             f"{' or '.join(map(repr, RAIN_SPACES))}")
        spec = trained_model(model, task, [DiffusionForecaster.name])
        sampling = {"sampler": ADVERSARIAL, "steps": 4, "sampler_checkpoint": None}
        unknown = sorted(set(spec.args) - set(sampling))
        if unknown:
            raise ValueError(f"{task}: model args {unknown} are not the adversarial sampler's; "
                             f"known: {', '.join(sampling)}")
        sampling.update(spec.args)
        if sampling["sampler"] != ADVERSARIAL:
            raise ValueError(f"{task} trains the {ADVERSARIAL!r} sampler, not {sampling['sampler']!r}")
        steps = sampling["steps"]
        if steps not in ADVERSARIAL_STEPS:
            raise ValueError(f"steps must be one of {ADVERSARIAL_STEPS}, got {steps}")
        if motion_perturbation > 0 and steps != 1:
            raise ValueError(f"{task}: motion_perturbation displaces the finished sample: it needs "
                             f"the one-step generator (steps: 1), got steps {steps}")
        if spec.checkpoint is None:
            raise ValueError(f"{task} needs the diffusion model's checkpoint (model.checkpoint)")
        base = DiffusionForecaster.from_checkpoint(spec.checkpoint)
        init_from = sampling["sampler_checkpoint"]
        super().__init__(n_out=base.window.n_out, val_members=val_members, lr=lr_g,
                         init_from=None if init_from is None else str(init_from))
        self.save_settings(spec)
        self.automatic_optimization = False
        self.base_checkpoint = {"path": spec.checkpoint, "sha256": file_sha256(spec.checkpoint)}
        # the base model's time step and pixel size: data on another are refused (ForecastTask.setup)
        self.expect_data(base.window, base.grid,
                         dict.fromkeys(DATA_QUANTITIES, f"its diffusion checkpoint {spec.checkpoint}"))
        self.base_hparams = dict(base.hparams)
        self.net_hparams = {k: v for k, v in base.hparams.items() if k not in WRAPPER_KEYS}
        self.wrapper_hparams = {k: v for k, v in base.hparams.items() if k in WRAPPER_KEYS}
        # the trained denoiser, frozen (the forecaster's base model; reference for the init test)
        self.denoiser = base.modules["denoiser"].requires_grad_(False).eval()
        self.generator = init_generator(self.denoiser, self.net_hparams, z_dim, noise_maps)
        self.diffusion = ConditionalDiffusion(self.generator, transform=base.transform,
                                              **self.wrapper_hparams)
        self.discriminator = (Discriminator(self.generator.n_out, self.generator.cond_channels,
                                            disc_channels, disc_depth) if objective == "gan" else None)
        if trainable is not None:
            freeze_all_but(self.generator, trainable, task)
        self.sampler = self.diffusion.build_sampler(ADVERSARIAL, generator=self.generator)
        self.sampler.set_timesteps(steps)
        if crps_space in RAIN_SPACES and not (self.diffusion.residual and self.diffusion.use_extrapolation):
            raise ValueError(f"{task}: crps_space {crps_space!r} needs a residual model conditioned on the "
                             "extrapolation (the rain is the residual added to it)")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams.precompute:
            PreparedResiduals.replace_training_windows(self._trainer, self.diffusion,
                                                       full_resolution=self.hparams.crps_space == "issued",
                                                       time_reversal=self.hparams.time_reversal)

    def init_targets(self) -> dict[str, list[torch.nn.Module]]:
        return {"generator": [self.generator]}

    # --- the stage's large steps ---------------------------------------------------------
    def step_pairs(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling-step indices ``k`` (B,) -> (t, s): the timestep and the next one (-1 = clean)."""
        ts = self.sampler.timesteps.to(k.device)
        nxt = torch.cat([ts[1:], ts.new_tensor([-1])])
        return ts[k], nxt[k]

    def generate_x0(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The generator's clean-data sample (clipped as the sampler clips it)."""
        out = self.generator(x_t, t, cond, **draw_latents(self.generator, x_t))
        return self.sampler.predict_x0(out.float(), t, x_t)

    def _real_pair(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        with torch.no_grad():
            cond, x0, covered = self.diffusion.training_inputs(batch)
            k = torch.randint(0, len(self.sampler.timesteps), (x0.shape[0],), device=x0.device)
            t, s = self.step_pairs(k)
            x_s = self.diffusion.schedule.q_sample(x0, s, torch.randn_like(x0))
            x_t = self.diffusion.schedule.q_step(x_s, s, t, torch.randn_like(x0))
        return x0, x_s, x_t, t, s, cond, covered

    def _fake_prev(self, x0_fake: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
        mean, var = self.diffusion.schedule.posterior(x0_fake, x_t, t, s)
        return mean + var.sqrt() * randn_like(mean)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.objective == "crps":
            return self._crps_step(batch)
        opt_g, opt_d = self.optimizers()
        x0, x_s, x_t, t, s, cond, covered = self._real_pair(batch)
        b = x0.shape[0]

        # discriminator: non-saturating loss + R1 on the real samples
        self.discriminator.requires_grad_(True)
        x_real = x_s.detach().requires_grad_(True)
        d_real = self.discriminator(x_real, x_t, t, cond)
        (grad,) = torch.autograd.grad(d_real.float().sum(), x_real, create_graph=True)
        r1 = grad.float().pow(2).flatten(1).sum(1).mean()
        with torch.no_grad():
            x_fake = self._fake_prev(self.generate_x0(x_t, t, cond), x_t, t, s)
        d_fake = self.discriminator(x_fake, x_t, t, cond)
        loss_d = F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d + 0.5 * self.hparams.r1_gamma * r1)
        self._clip(opt_d)
        opt_d.step()

        # generator: non-saturating loss (+ masked x0 reconstruction)
        self.discriminator.requires_grad_(False)
        x0_fake = self.generate_x0(x_t, t, cond)
        d_gen = self.discriminator(self._fake_prev(x0_fake, x_t, t, s), x_t, t, cond)
        loss_adv = F.softplus(-d_gen.float()).mean()
        loss_g = loss_adv
        rec = torch.zeros((), device=x0.device)
        if self.hparams.lambda_rec > 0:
            rec = covered_mean((x0_fake - x0) ** 2, covered)
            loss_g = loss_g + self.hparams.lambda_rec * rec
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        self._clip(opt_g)
        opt_g.step()
        self.discriminator.requires_grad_(True)

        self.log_dict({"train/loss_d": loss_d.detach(), "train/r1": r1.detach(),
                       "train/loss_g": loss_adv.detach(), "train/rec": rec.detach(),
                       "train/d_real": d_real.detach().float().mean(),
                       "train/d_fake": d_fake.detach().float().mean()}, batch_size=b)
        self.log("train/loss", loss_g.detach(), prog_bar=True, batch_size=b)
        return loss_g.detach()

    def fair_crps(self, x0: Tensor, x_t: Tensor, t: Tensor, cond: Tensor, covered: Tensor | None,
                  motion: Tensor | None = None, issued: IssuedTruth | None = None) -> Tensor:
        """Fair CRPS of ``crps_members`` generator samples of ``x0`` given ``x_t``, averaged over
        covered cells (for two samples a, b: ``(|a - x0| + |b - x0|) / 2 - |a - b| / 2``), an
        unbiased estimate of the CRPS of the generator's distribution (its expectation is lowest
        for the true one), in the ``crps_space`` units; with ``verified_members`` K, of a K-member
        ensemble drawn from it (``|a - b| / 2`` times 1 - 1/K); with ``motion_perturbation``, of the
        samples displaced by their motion errors (``motion`` (B, 2, h, w) diffusion-grid cells per
        step). ``crps_space="issued"`` scores against ``issued`` (:meth:`issued_truth`)."""
        members = torch.stack([self.generate_x0(x_t, t, cond)
                               for _ in range(self.hparams.crps_members)], dim=1)
        scored = None if covered is None else covered[:, None].expand(-1, x0.shape[1], -1, -1)
        m = members.shape[1]
        if self.hparams.crps_space == "rain":
            members = self.verified_rain(members.flatten(0, 1), cond.repeat_interleave(m, dim=0)
                                         ).unflatten(0, members.shape[:2])
            x0 = self.diffusion.rain_on_grid(x0, cond)
        elif self.hparams.crps_space == "issued":
            if issued is None:
                raise ValueError("crps_space 'issued' needs the full-resolution truth (issued_truth)")
            members = self.verified_rain(members.flatten(0, 1), cond, issued.base.repeat_interleave(m, dim=0)
                                         ).unflatten(0, members.shape[:2])
            x0 = issued.future
            scored = None if issued.covered is None else issued.covered[:, None].expand_as(x0)
        if self.hparams.motion_perturbation > 0:
            if motion is None:
                raise ValueError("motion_perturbation needs the batch's motion (data.with_motion: true)")
            shift = self.hparams.motion_perturbation * bps_displacements(
                motion, m, members.shape[2], self.cell_km, self.window.timestep_minutes)
            if shift.shape[-2:] != members.shape[-2:]:  # drawn on the diffusion grid, read at full resolution
                read = F.interpolate(shift.flatten(0, 2), size=members.shape[-2:], mode="bilinear",
                                     align_corners=False)
                shift = self.diffusion.coarsen * read.unflatten(0, shift.shape[:3])
            members = displace(members, shift)
            inside = read_inside_frame(shift).all(dim=1)
            scored = inside if scored is None else scored & inside
        score = crps_ensemble(members, x0, fair=True, size=self.hparams.verified_members)
        return score.mean() if scored is None else masked_mean(score, scored.to(score.dtype))

    def verified_rain(self, x: Tensor, cond: Tensor, base: Tensor | None = None) -> Tensor:
        """The diffused quantity ``x`` as the forecast issues it (mm/h, dry below the 0.1 mm/h ingest
        threshold), with the smooth inverse's gradient (straight through the cut, which has none):
        scored without the cut, a generator gains by removing haze below 0.1 mm/h that the forecast
        never shows, and can lose the rain it does show. On the diffusion grid (added to the
        extrapolation ``cond`` carries), or with ``base`` (B, n_out, H, W) the full-resolution
        extrapolation in model space, on its grid as :meth:`ConditionalDiffusion.sample` composes it."""
        if base is None:
            soft = self.diffusion.rain_on_grid(x, cond, threshold=False)
            return self.diffusion.rain_on_grid(x.detach(), cond) + soft - soft.detach()
        forecast = self.diffusion.from_diffused(x, base)  # model space at the full resolution
        soft = self.diffusion.to_rain(forecast, threshold=False)
        return self.diffusion.to_rain(forecast.detach().clamp(-1.0, 1.0)) + soft - soft.detach()

    def scored_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch as the "crps" objective reads it: with ``crps_space="issued"`` a window becomes its
        precomputed inputs with the full-resolution fields (:func:`prepared_inputs`: one extrapolation
        serves both), as the precomputed training windows already are; any other batch as it is."""
        if self.hparams.crps_space != "issued" or RESIDUAL in batch:
            return batch
        with torch.no_grad():
            return prepared_inputs(self.diffusion, batch[PAST], batch[FUTURE], batch.get(MASK),
                                   batch.get(MOTION), full_resolution=True)

    def issued_truth(self, batch: dict[str, Tensor]) -> IssuedTruth | None:
        """What ``crps_space="issued"`` scores against, from a batch of :meth:`scored_inputs`; None
        in the other spaces."""
        if self.hparams.crps_space != "issued":
            return None
        if EXTRAPOLATION not in batch:
            raise ValueError("crps_space 'issued' needs the precomputed full-resolution fields "
                             "(PreparedResiduals with full_resolution=True, or scored_inputs)")
        future = batch[FUTURE]
        return IssuedTruth(batch[EXTRAPOLATION], torch.where(future >= RAIN_THRESHOLD_MM_H, future, 0.0),
                           batch.get(FULL_MASK))

    @property
    def cell_km(self) -> float:
        """Side of a diffusion-grid cell in km."""
        return self.grid.pixel_size_m / 1000.0 * self.diffusion.coarsen

    def motion_on_grid(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's motion in diffusion-grid cells per step (precomputed batches carry it so)."""
        motion = batch.get(MOTION)
        if motion is None or RESIDUAL in batch:
            return motion
        return self.diffusion.motion_on_grid(motion)

    def _crps_step(self, batch: dict[str, Tensor]) -> Tensor:
        opt_g = self.optimizers()
        batch = self.scored_inputs(batch)
        x0, _, x_t, t, _, cond, covered = self._real_pair(batch)
        loss = self.fair_crps(x0, x_t, t, cond, covered, self.motion_on_grid(batch), self.issued_truth(batch))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(opt_g)
        opt_g.step()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=x0.shape[0])
        return loss.detach()

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The generator's loss on a batch (no update): its fair CRPS, or with "gan" its loss
        against the current discriminator."""
        if self.hparams.objective == "crps":
            batch = self.scored_inputs(batch)
            x0, _, x_t, t, _, cond, covered = self._real_pair(batch)
            return self.fair_crps(x0, x_t, t, cond, covered, self.motion_on_grid(batch),
                                  self.issued_truth(batch))
        _, _, x_t, t, s, cond, _ = self._real_pair(batch)
        x_fake = self._fake_prev(self.generate_x0(x_t, t, cond), x_t, t, s)
        return F.softplus(-self.discriminator(x_fake, x_t, t, cond).float()).mean()

    def _clip(self, opt: Any) -> None:
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = tuple(self.hparams.betas)
        trained = [p for p in self.generator.parameters() if p.requires_grad]
        optimisers = [torch.optim.Adam(trained, lr=self.hparams.lr_g, betas=betas)]
        if self.discriminator is not None:
            optimisers.append(torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr_d,
                                               betas=betas))
        return optimisers

    # --- validation and export ----------------------------------------------------------
    @torch.no_grad()
    def sample(self, past: Tensor, members: int = 1, generator: torch.Generator | None = None,
               motion: Tensor | None = None) -> Tensor:
        """(B, n_in, H, W) mm/h -> (B, members, n_out, H, W) mm/h with the current generator."""
        return self.diffusion.sample(past, self.n_out, members, self.sampler, len(self.sampler.timesteps),
                                     generator, motion=motion)

    def forecast_batch(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        # in memory (no checkpoint file per batch), with the batch's motion and a fixed seed per batch
        gen = torch.Generator(device=self.device).manual_seed(batch_idx)
        return self.sample(batch[PAST], self.val_members, gen, motion=batch.get(MOTION))

    def to_forecaster(self) -> DiffusionForecaster:
        """The diffusion forecaster with this generator: the base model sampled by this task's
        adversarial sampler, which owns the generator."""
        forecaster = DiffusionForecaster({"denoiser": self.denoiser}, self.base_hparams,
                                         transform=self.diffusion.transform, window=self.window,
                                         grid=self.grid, sampler=self.sampler,
                                         steps=len(self.sampler.timesteps))
        return forecaster.to(self.device)

    def checkpoint_payload(self) -> dict[str, Any]:
        trainer = self._trainer
        metrics = self.validation_metrics()
        hp = self.hparams
        return {
            "forecaster": ADVERSARIAL_FORECASTER,
            "hparams": {"generator": generator_hparams(self.net_hparams, self.generator.z_dim,
                                                       getattr(self.generator, "noise_maps", 0)),
                        "steps": len(self.sampler.timesteps), **self.wrapper_hparams,
                        "base_checkpoint": self.base_checkpoint},
            "transform": self.diffusion.transform.to_dict(),
            "window": self.window.to_dict(),
            "grid": self.grid.to_dict(),
            "data": self.data_description(),
            "metrics": metrics,
            "training": {"global_step": int(self.global_step), "objective": hp.objective,
                         "crps_space": hp.crps_space, "crps_members": int(hp.crps_members),
                         "verified_members": hp.verified_members, "trainable": hp.trainable,
                         "time_reversal": bool(hp.time_reversal),
                         "motion_perturbation": float(hp.motion_perturbation),
                         "r1_gamma": float(hp.r1_gamma),
                         "lambda_rec": float(hp.lambda_rec), "lr_g": float(hp.lr_g), "lr_d": float(hp.lr_d),
                         "world_size": int(trainer.world_size) if trainer else 1},
            "state_dict": {"generator": {k: v.detach().float().cpu()
                                         for k, v in self.generator.state_dict().items()}},
        }

