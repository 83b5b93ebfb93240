"""Training of the conditional diffusion nowcaster (a :class:`ForecastTask`).

The network trains with AdamW (linear warm-up, then cosine decay to 10 %); an exponential
moving average of its weights (``ema_decay``) is what validation samples from and what is
exported. Mixed precision and gradient clipping are the trainer's (``precision: bf16-mixed``,
``gradient_clip_val``); checkpointing, resumption and DDP are Lightning's.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from nowcast.models.diffusion.forecaster import DiffusionForecaster
from nowcast.models.diffusion.networks import DENOISERS, build_denoiser
from nowcast.models.diffusion.settings import DiffusionNetwork
from nowcast.models.diffusion.wrapper import ConditionalDiffusion
from nowcast.models.spec import ModelSpec
from nowcast.training.prepared import PreparedResiduals
from nowcast.training.task import ForecastTask, declared_data, trained_model, typed_args

#: the diffusion model of :class:`DiffusionNetwork`'s defaults, trained from scratch
DEFAULT_MODEL = ModelSpec(DiffusionForecaster.name)


class DiffusionTask(ForecastTask):
    """Conditional diffusion training.

    Args:
        model: what to train, ``{name: diffusion, args: {...}, checkpoint: ...}``
            (:class:`~nowcast.models.spec.ModelSpec`): ``args`` are the network and objective
            (:class:`~nowcast.models.diffusion.settings.DiffusionNetwork`), ``checkpoint`` a
            diffusion file of the same settings whose (EMA) weights start both the network and
            its average (fine-tuning; see :class:`ForecastTask`).
        n_in, n_out: past frames seen and future frames predicted.
        lr, weight_decay: AdamW.
        warmup_steps: linear learning-rate warm-up.
        ema_decay: decay of the weight average used for validation and export.
        val_sampler, val_steps, val_members: how validation samples (EMA weights).
        precompute: compute the weight-independent inputs of every training window (extrapolation,
            residual, diffusion grid) once at the start of fit and train on crops of them
            (:class:`~nowcast.training.prepared.PreparedResiduals`); needs the data module's
            motion (``with_motion``).
        timestep_minutes, pixel_size_m: None (default): the data module's stores' (what the exported
            checkpoint records; see :class:`ForecastTask`); a number: what the data must have.
    """

    def __init__(self, model: ModelSpec = DEFAULT_MODEL, n_in: int = 4, n_out: int = 12, lr: float = 3e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 200, ema_decay: float = 0.999,
                 val_sampler: str = "ddim", val_steps: int = 10, val_members: int = 1,
                 precompute: bool = False, timestep_minutes: float | None = None,
                 pixel_size_m: float | None = None) -> None:
        spec = trained_model(model, type(self).__name__, [DiffusionForecaster.name])
        network = typed_args(spec, DiffusionNetwork)
        super().__init__(n_out=n_out, val_members=val_members, lr=lr, weight_decay=weight_decay,
                         init_from=spec.checkpoint)
        self.save_settings(spec)
        if network.architecture not in DENOISERS:
            raise ValueError(f"unknown architecture {network.architecture!r}; known: {', '.join(DENOISERS)}")
        self.net_hparams = network.denoiser_hparams(n_in, n_out)
        self.wrapper_hparams = network.wrapper_hparams()
        self.diffusion = ConditionalDiffusion(build_denoiser(self.net_hparams),
                                              transform=network.transform, **self.wrapper_hparams)
        self.ema = copy.deepcopy(self.diffusion.denoiser).requires_grad_(False)
        self.expect_data(*declared_data(n_in, n_out, timestep_minutes, pixel_size_m))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams.precompute:
            PreparedResiduals.replace_training_windows(self._trainer, self.diffusion)

    def init_targets(self) -> dict[str, list[torch.nn.Module]]:
        return {"denoiser": [self.diffusion.denoiser, self.ema]}

    # --- training -----------------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.diffusion.training_loss(batch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # bias-corrected warm-up of the average (as in timm's ModelEmaV3): early weights fade fast
        step = self.global_step
        decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.diffusion.denoiser.parameters(), strict=True):
                ema.lerp_(live.detach().to(ema.dtype), 1.0 - decay)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.diffusion.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(1, self.hparams.warmup_steps)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        total = total if math.isfinite(total) and total > warmup else None

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if total is None:
                return 1.0
            progress = min(1.0, (step - warmup) / (total - warmup))
            return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- validation and export ----------------------------------------------------------
    def to_forecaster(self, sampler: str | None = None, steps: int | None = None,
                      **options: Any) -> DiffusionForecaster:
        """The EMA weights behind the Forecaster contract (validation sampler by default);
        ``options``: other :class:`DiffusionForecaster` settings (e.g. ``match``)."""
        hp = {**self.net_hparams, **self.wrapper_hparams}
        forecaster = DiffusionForecaster({"denoiser": self.ema}, hp, transform=self.diffusion.transform,
                                         window=self.window, grid=self.grid,
                                         sampler=sampler or self.hparams.val_sampler,
                                         steps=steps or self.hparams.val_steps, **options)
        return forecaster.to(self.device)

    def checkpoint_payload(self) -> dict[str, Any]:
        metrics = self.validation_metrics()
        return {
            "forecaster": DiffusionForecaster.name,
            "hparams": {**self.net_hparams, **self.wrapper_hparams},
            "transform": self.diffusion.transform.to_dict(),
            "window": self.window.to_dict(),
            "grid": self.grid.to_dict(),
            "data": self.data_description(),
            "metrics": metrics,
            "training": {"global_step": int(self.global_step), "epoch": int(self.current_epoch),
                         "world_size": int(self._trainer.world_size) if self._trainer else 1,
                         "ema_decay": float(self.hparams.ema_decay), "lr": float(self.lr)},
            "state_dict": {"denoiser": {k: v.detach().float().cpu()
                                        for k, v in self.ema.state_dict().items()}},
        }
