"""The diffusion nowcaster behind the Forecaster contract (registered as "diffusion")."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nowcast.data.transforms import RainTransform
from nowcast.models.advection import advect
from nowcast.models.base import FORECASTERS
from nowcast.models.checkpoint import CheckpointMismatchError, check_compatible, load_checkpoint
from nowcast.models.diffusion.networks import Denoiser, build_denoiser
from nowcast.models.diffusion.wrapper import ConditionalDiffusion, CondModelFn, latent_model_fn, motion_of
from nowcast.models.learned import CHECKPOINT_DIR, LearnedForecaster
from nowcast.models.matching import match_to_observation
from nowcast.models.perturbation import bps_displacements, displace
from nowcast.types import GridSpec, WindowSpec

#: checkpoint ``hparams`` keys that build the denoiser; the others configure the wrapper
WRAPPER_KEYS = ("prediction_type", "residual", "n_train_steps", "loss_weighting", "min_snr_gamma", "coarsen",
                "residual_scale")


@FORECASTERS.register("diffusion")
class DiffusionForecaster(LearnedForecaster):
    """Ensemble nowcasts from a conditional diffusion model.

    ``hparams`` = the denoiser's ``architecture`` ("transformer" when absent, or "hybrid"; see
    :mod:`nowcast.models.diffusion.networks`) and constructor arguments (``n_in``, ``n_out``,
    ``extrapolation``, sizes) plus the wrapper's (:data:`WRAPPER_KEYS`). Motion for the
    extrapolation conditioning is ``forecast(..., motion=...)``'s (e.g. a motion cache; needed
    where pysteps is missing), else estimated with pysteps from ``past`` (CPU).

    Args (besides the :class:`LearnedForecaster` ones):
        sampler: a registered sampler name ("ddim", "ddpm", "dpmpp_2m", "adversarial").
        steps: reverse steps (None: 10, or for "adversarial" the step count it was trained for).
        eta: DDIM stochasticity (only used by "ddim").
        adversarial_checkpoint: the adversarial generator's checkpoint for
            ``sampler == "adversarial"`` (see :meth:`_load_generator`); None with the shipped
            base checkpoint = the shipped ``diffusion-adversarial-<steps>.pt``.
        match: "observation" gives every member at every lead time the rain distribution of the
            last past frame, as STEPS does (:mod:`nowcast.models.matching`; ties broken by the
            extrapolation); "none" leaves the sampled values.
        motion_perturbation: size of each member's random motion error relative to the one STEPS
            draws (pysteps' BPS defaults, :mod:`nowcast.models.perturbation`); 0 moves every member
            with the one estimated motion.
    """

    summary = "conditional diffusion ensemble (the paper's model): extrapolation residual, few-step samplers"

    name = "diffusion"
    deterministic = False
    uses_motion = True

    def __init__(self, modules: dict[str, nn.Module], hparams: dict[str, Any],
                 transform: RainTransform | str | dict = "dbz", window: WindowSpec | None = None,
                 grid: GridSpec | None = None, checkpoint: dict[str, Any] | None = None,
                 checkpoint_path: str | Path | None = None, sampler: str = "ddim", steps: int | None = None,
                 eta: float = 0.0, adversarial_checkpoint: str | Path | None = None,
                 match: Literal["none", "observation"] = "none",
                 motion_perturbation: float = 0.0) -> None:
        if match not in ("none", "observation"):
            raise ValueError(f"match must be 'none' or 'observation', got {match!r}")
        if not 0.0 <= float(motion_perturbation) < float("inf"):
            raise ValueError(f"motion_perturbation must be a finite number >= 0, got {motion_perturbation!r}")
        hp = dict(hparams)
        window = window or WindowSpec(n_in=hp.get("n_in", 4), n_out=hp.get("n_out", 12))
        super().__init__(modules, hp, transform, window, grid, checkpoint, checkpoint_path)
        self.sampler, self.eta, self.match = sampler, float(eta), match
        self.motion_perturbation = float(motion_perturbation)
        self.steps = int(steps) if steps is not None else 10
        self.diffusion = ConditionalDiffusion(
            self.modules["denoiser"], transform=self.transform,
            **{k: hp[k] for k in WRAPPER_KEYS if k in hp},
        )
        self.adversarial_checkpoint = adversarial_checkpoint
        self._model_fn: CondModelFn | None = None
        if sampler == "adversarial":
            adversarial_checkpoint = adversarial_checkpoint or self.shipped_generator(checkpoint_path, steps)
            if adversarial_checkpoint is None or not Path(adversarial_checkpoint).exists():
                raise ValueError(f"sampler 'adversarial' needs adversarial_checkpoint, a trained generator "
                                 f"(got {adversarial_checkpoint}; see configs/train/adversarial.yaml)")
            self.adversarial_checkpoint = adversarial_checkpoint
            self.modules["generator"], trained_steps = self._load_generator(adversarial_checkpoint)
            self.steps = int(steps) if steps is not None else trained_steps
            self._model_fn = latent_model_fn(self.modules["generator"])

    @classmethod
    def shipped_generator(cls, checkpoint_path: str | Path | None, steps: int | None) -> Path | None:
        """The adversarial generator shipped beside the shipped base checkpoint (None for another base)."""
        shipped_base = (checkpoint_path is not None
                        and Path(checkpoint_path).resolve() == cls.default_checkpoint().resolve())
        return CHECKPOINT_DIR / f"diffusion-adversarial-{steps or 4}.pt" if shipped_base else None

    @classmethod
    def weight_files(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> list[Path]:
        files = super().weight_files(checkpoint)
        if kwargs.get("sampler") == "adversarial":
            generator = (kwargs.get("adversarial_checkpoint")
                         or cls.shipped_generator(files[0], kwargs.get("steps")))
            files += [Path(generator)] if generator else []
        return files

    def _load_generator(self, path: str | Path) -> tuple[Denoiser, int]:
        """The adversarial generator: a nowcast checkpoint whose ``hparams["generator"]`` holds
        the denoiser's arguments (with ``z_dim``) and whose
        ``state_dict["generator"]`` its weights, built for this model's window, grid and transform."""
        ckpt = load_checkpoint(path)
        check_compatible(ckpt, window=self.window, grid=self.grid, transform=self.transform.to_dict())
        if "generator" not in ckpt["hparams"] or "generator" not in ckpt["state_dict"]:
            raise CheckpointMismatchError(
                f"{path} holds no adversarial generator (hparams/state_dict 'generator')")
        adv = ckpt["hparams"]
        differs = [k for k in WRAPPER_KEYS if k in adv and adv[k] != self.hparams.get(k)]
        if differs:
            raise CheckpointMismatchError(f"{path} was trained on a base model with other {differs}")
        net = build_denoiser(ckpt["hparams"]["generator"])
        net.load_state_dict(ckpt["state_dict"]["generator"])
        return net.eval().to(self.device), int(ckpt["hparams"].get("steps", 4))

    @classmethod
    def build_modules(cls, hparams: dict[str, Any]) -> dict[str, nn.Module]:
        args = {k: v for k, v in hparams.items() if k not in WRAPPER_KEYS}
        return {"denoiser": build_denoiser(args)}

    @classmethod
    def tiny(cls, **kwargs: Any) -> DiffusionForecaster:
        """A small untrained model of the shipped recipe (contract tests); runs on any frame size."""
        hp = {"architecture": "hybrid", "n_in": 4, "n_out": 12, "extrapolation": True, "channels": [8, 16],
              "dim": 32, "depth": 1, "heads": 2, "prediction_type": "x0", "residual": True, "coarsen": 2,
              "residual_scale": 0.2}
        kwargs.setdefault("steps", 2)
        return cls(cls.build_modules(hp), hp, **kwargs)

    def _forecast(self, past: Tensor, n_out: int, members: int, generator: torch.Generator | None,
                  motion: Tensor | None) -> Tensor:
        if (self.match != "none" or self.motion_perturbation > 0) and motion is None:
            motion = motion_of(past)  # once: the sampler's extrapolation and the post-processing share it
        # any frame size: edge-replicate up to a multiple the model runs on, crop the result
        p = self.diffusion.size_multiple
        h, w = past.shape[-2:]
        pad = (0, -w % p, 0, -h % p)
        padded, padded_motion = past, motion
        if any(pad):
            padded = torch.nn.functional.pad(past, pad, mode="replicate")
            if motion is not None:
                padded_motion = torch.nn.functional.pad(motion, pad, mode="replicate")
        rain = self.diffusion.sample(padded, n_out, members, self.sampler, self.steps, generator,
                                     motion=padded_motion, model_fn=self._model_fn, **self._sampler_kwargs())
        rain = rain[..., :h, :w]
        if self.motion_perturbation > 0:
            shift = bps_displacements(motion, members, n_out, self.grid.pixel_size_m / 1000.0,
                                      self.window.timestep_minutes, generator)
            rain = displace(rain, self.motion_perturbation * shift)
        if self.match == "observation":
            extrapolation = advect(past[:, -1].float(), motion, n_out)
            rain = match_to_observation(rain, past[:, -1], tie_break=extrapolation)
        return rain

    def _sampler_kwargs(self) -> dict[str, Any]:
        return {"eta": self.eta} if self.sampler == "ddim" else {}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(sampler=self.sampler, steps=self.steps, match=self.match,
                    motion_perturbation=self.motion_perturbation)
        if self.sampler == "ddim":
            info["eta"] = self.eta
        if self.adversarial_checkpoint is not None:
            info["adversarial_checkpoint"] = str(self.adversarial_checkpoint)
        return info
