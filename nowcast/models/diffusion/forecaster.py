"""The diffusion nowcaster behind the Forecaster contract (registered as "diffusion")."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nowcast.data.transforms import RainTransform
from nowcast.models.advection import advect
from nowcast.models.base import FORECASTERS
from nowcast.models.checkpoint import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    check_compatible,
    load_checkpoint,
)
from nowcast.models.diffusion.networks import Denoiser, build_denoiser
from nowcast.models.diffusion.settings import WRAPPER_KEYS
from nowcast.models.diffusion.wrapper import ConditionalDiffusion, motion_of
from nowcast.models.learned import CHECKPOINT_DIR, LearnedForecaster
from nowcast.models.matching import match_to_observation
from nowcast.models.perturbation import bps_displacements, displace
from nowcast.samplers import SAMPLERS, Sampler
from nowcast.types import GridSpec, WindowSpec

#: the arguments that turn the member post-processing off: the samples as drawn (a shipped file's
#: card turns it on by default; benchmarks and diagnostics of the sampling itself pass these)
RAW_SAMPLES: dict[str, Any] = {"match": "none", "motion_perturbation": 0.0}


@FORECASTERS.register("diffusion")
class DiffusionForecaster(LearnedForecaster):
    """Ensemble nowcasts from a conditional diffusion model.

    ``hparams`` = the denoiser's ``architecture`` ("transformer" when absent, or "hybrid"; see
    :mod:`nowcast.models.diffusion.networks`) and constructor arguments (``n_in``, ``n_out``,
    ``extrapolation``, sizes) plus the wrapper's (:data:`WRAPPER_KEYS`). Motion for the
    extrapolation conditioning is ``forecast(..., motion=...)``'s (e.g. a motion cache; needed
    where pysteps is missing), else estimated with pysteps from ``past`` (CPU).

    Args (besides the :class:`LearnedForecaster` ones):
        sampler: a registered sampler name ("ddim", "ddpm", "dpmpp_2m", "adversarial") or a built
            :class:`~nowcast.samplers.Sampler`; every one is called the same way.
        steps: reverse steps (None: 10, or the step count a sampler's own network was trained for).
        sampler_args: the sampler's constructor arguments (e.g. ``{"eta": 1.0}`` for DDIM).
        sampler_checkpoint: for a sampler that brings its own network (``own_network``, the
            adversarial generator): the nowcast checkpoint holding it (see :meth:`_load_network`);
            None with the shipped base checkpoint = the shipped ``diffusion-<sampler>-<steps>.pt``.
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
                 checkpoint_path: str | Path | None = None, sampler: str | Sampler = "ddim",
                 steps: int | None = None, sampler_args: dict[str, Any] | None = None,
                 sampler_checkpoint: str | Path | None = None,
                 match: Literal["none", "observation"] = "none",
                 motion_perturbation: float = 0.0) -> None:
        self.check_settings(hparams, sampler=sampler, steps=steps, match=match,
                            motion_perturbation=motion_perturbation)
        hp = dict(hparams)
        window = window or WindowSpec(n_in=hp.get("n_in", 4), n_out=hp.get("n_out", 12))
        super().__init__(modules, hp, transform, window, grid, checkpoint, checkpoint_path)
        self.match, self.motion_perturbation = match, float(motion_perturbation)
        self.diffusion = ConditionalDiffusion(
            self.modules["denoiser"], transform=self.transform,
            **{k: hp[k] for k in WRAPPER_KEYS if k in hp},
        )
        self.sampler_args = dict(sampler_args or {})
        self.sampler_checkpoint = sampler_checkpoint
        trained_steps = None
        if isinstance(sampler, Sampler):
            self.sampler, self.sampler_impl = type(sampler).__name__, sampler
        else:
            args = dict(self.sampler_args)
            if SAMPLERS.get(sampler).own_network:
                path = sampler_checkpoint or self.shipped_network(checkpoint_path, sampler, steps)
                if path is None or not Path(path).exists():
                    raise ValueError(f"sampler {sampler!r} needs sampler_checkpoint, its trained network "
                                     f"(got {path}; see configs/train/adversarial.yaml)")
                self.sampler_checkpoint = path
                self.modules["generator"], trained_steps = self._load_network(path)
                args["generator"] = self.modules["generator"]
            self.sampler, self.sampler_impl = sampler, self.diffusion.build_sampler(sampler, **args)
        self.steps = int(steps) if steps is not None else (trained_steps or 10)

    @classmethod
    def check_settings(cls, hparams: dict[str, Any], **kwargs: Any) -> None:
        """Refuse a sampler that is not registered, a step count outside 1..the checkpoint's
        training schedule, an unknown ``match`` and a negative or infinite perturbation size."""
        match = kwargs.get("match", "none")
        if match not in ("none", "observation"):
            raise ValueError(f"match must be 'none' or 'observation', got {match!r}")
        size = kwargs.get("motion_perturbation", 0.0)
        if not isinstance(size, (int, float)) or isinstance(size, bool) or not 0.0 <= size < float("inf"):
            raise ValueError(f"motion_perturbation must be a finite number >= 0, got {size!r}")
        sampler = kwargs.get("sampler", "ddim")
        if not isinstance(sampler, Sampler):
            SAMPLERS.get(sampler)  # UnknownNameError listing the registered samplers
        steps, n_train = kwargs.get("steps"), int(hparams.get("n_train_steps", 1000))
        whole = isinstance(steps, (int, float)) and not isinstance(steps, bool) and float(steps).is_integer()
        if steps is not None and not (whole and 1 <= steps <= n_train):
            raise ValueError(f"steps must be a whole number in 1..{n_train} (the training schedule's "
                             f"length), got {steps!r}")

    @classmethod
    def check_arguments(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> None:
        try:
            super().check_arguments(checkpoint, **kwargs)
        except CheckpointNotFoundError as err:
            sampler = kwargs.get("sampler")
            if (isinstance(sampler, str) and sampler in SAMPLERS and SAMPLERS.get(sampler).own_network
                    and not kwargs.get("sampler_checkpoint")):
                raise CheckpointNotFoundError(
                    f"{err}: no {sampler} network with {kwargs.get('steps') or 4} steps is shipped; "
                    "train one (configs/train/adversarial.yaml) and give it as sampler_checkpoint=<file>"
                ) from err
            raise

    @classmethod
    def shipped_network(cls, checkpoint_path: str | Path | None, sampler: str,
                        steps: int | None) -> Path | None:
        """A sampler's network shipped beside the shipped base checkpoint (None for another base)."""
        shipped_base = (checkpoint_path is not None
                        and Path(checkpoint_path).resolve() == cls.default_checkpoint().resolve())
        return CHECKPOINT_DIR / f"diffusion-{sampler}-{steps or 4}.pt" if shipped_base else None

    @classmethod
    def weight_files(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> list[Path]:
        files = super().weight_files(checkpoint)
        sampler = kwargs.get("sampler", "ddim")
        if isinstance(sampler, str) and sampler in SAMPLERS and SAMPLERS.get(sampler).own_network:
            network = (kwargs.get("sampler_checkpoint")
                       or cls.shipped_network(files[0], sampler, kwargs.get("steps")))
            files += [Path(network)] if network else []
        return files

    def _load_network(self, path: str | Path) -> tuple[Denoiser, int]:
        """A sampler's own network (the adversarial generator): a nowcast checkpoint whose
        ``hparams["generator"]`` holds the denoiser's arguments (with ``z_dim``) and whose
        ``state_dict["generator"]`` its weights, built for this model's window, grid and transform;
        returns it and the step count it was trained for."""
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
        rain = self.diffusion.sample(padded, n_out, members, self.sampler_impl, self.steps, generator,
                                     motion=padded_motion)
        rain = rain[..., :h, :w]
        if self.motion_perturbation > 0:
            shift = bps_displacements(motion, members, n_out, self.grid.pixel_size_m / 1000.0,
                                      self.window.timestep_minutes, generator)
            rain = displace(rain, self.motion_perturbation * shift)
        if self.match == "observation":
            extrapolation = advect(past[:, -1].float(), motion, n_out)
            rain = match_to_observation(rain, past[:, -1], tie_break=extrapolation)
        return rain

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(sampler=self.sampler, steps=self.steps, match=self.match,
                    motion_perturbation=self.motion_perturbation)
        if self.sampler_args:
            info["sampler_args"] = dict(self.sampler_args)
        if self.sampler_checkpoint is not None:
            info["sampler_checkpoint"] = str(self.sampler_checkpoint)
        return info
