"""Training of the learned baselines (ConvLSTM, SimVP, conditional GAN).

Both tasks train a :class:`~nowcast.models.blocks.NetForecaster`'s network in transform space
on the batches of the shared DataModule, and inherit the shared validation (CSI at 1 mm/h,
MSE in mm/h) of :class:`~nowcast.training.task.ForecastTask`.

- :class:`RegressionTask` (``model: {name: convlstm | simvp}``): masked MSE (or L1) to the observed
  future in transform space; one optimiser, automatic optimisation.
- :class:`CGANTask`: DGMR-style training with manual optimisation; per batch one
  discriminator step (hinge loss, spatial + temporal discriminator) and one generator step
  (hinge adversarial loss on one sample + ``reg_weight`` x grid-cell regulariser on the mean
  of ``n_samples`` samples). ``d_warmup`` batches of discriminator-only steps come first
  when a fit starts from a shipped file (``model.checkpoint``), which holds the generator alone.

The model spec's ``args`` name a size preset of the forecaster class (``size: default | small |
tiny``) and override its settings; the frame counts always come from ``n_in``/``n_out``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nowcast.data.transforms import build_transform
from nowcast.models import import_all
from nowcast.models.base import FORECASTERS
from nowcast.models.baselines.cgan import SpatialDiscriminator, TemporalDiscriminator
from nowcast.models.blocks import NetForecaster
from nowcast.models.spec import ModelSpec
from nowcast.training.task import ForecastTask, declared_data, trained_model
from nowcast.types import FUTURE, MASK, PAST

#: the models the tasks build when none is named: the default preset, trained from scratch
DEFAULT_REGRESSION = ModelSpec("simvp")
DEFAULT_CGAN = ModelSpec("cgan")


class NetTask(ForecastTask):
    """What both baseline tasks share: building the network, transform-space batches,
    the forecaster view of the current weights and the shippable checkpoint.

    Args:
        model: what to train, ``{name, args, checkpoint}`` (:class:`~nowcast.models.spec.ModelSpec`;
            ``name`` one of the task's :attr:`trains`): ``args`` are ``size`` (a named preset of
            the forecaster class, default "default"), ``transform`` (model space, default "dbz")
            and overrides of the preset's settings; ``checkpoint`` a file of the same settings
            whose weights start the fit (see :class:`ForecastTask`).
        n_in, n_out: the frames trained for.
        timestep_minutes, pixel_size_m: None (default): the data module's stores' (what the exported
            checkpoint records; see :class:`ForecastTask`); a number: what the data must have.
        val_members: ensemble members per validation window.
        lr, weight_decay: the optimiser's.
    """

    #: the registry names this task trains
    trains: tuple[str, ...] = ()

    def __init__(
        self,
        model: ModelSpec,
        n_in: int = 4,
        n_out: int = 12,
        timestep_minutes: float | None = None,
        pixel_size_m: float | None = None,
        val_members: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        spec = trained_model(model, type(self).__name__, self.trains)
        super().__init__(n_out=n_out, val_members=val_members, lr=lr, weight_decay=weight_decay,
                         init_from=spec.checkpoint)
        import_all()
        cls = FORECASTERS.get(spec.name)
        if not issubclass(cls, NetForecaster):
            raise ValueError(f"{spec.name!r} is not a network forecaster these tasks can train")
        self.forecaster_cls = cls
        args = dict(spec.args)
        size, transform = args.pop("size", "default"), args.pop("transform", "dbz")
        preset = cls.hparams_for(size, **args)
        # the window fixes the frame counts of the networks that are built for them
        frames = {"n_in": n_in, "n_out": n_out}
        self.net_hparams = {k: frames.get(k, v) for k, v in preset.items()}
        self.nets = nn.ModuleDict(cls.build_modules(self.net_hparams))
        self.rain_transform = build_transform(transform)
        self.expect_data(*declared_data(n_in, n_out, timestep_minutes, pixel_size_m))
        self.spec = spec

    @property
    def net(self) -> nn.Module:
        return self.nets["net"]

    def init_targets(self) -> dict[str, list[nn.Module]]:
        return {name: [module] for name, module in self.nets.items()}

    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()

    def model_space(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(x past, y future, mask) in transform space: (B, n_in, H, W), (B, n_out, H, W),
        (B, 1, H, W) float."""
        past, future = batch[PAST][:, -self.window.n_in:], batch[FUTURE][:, : self.n_out]
        if past.shape[1] < self.window.n_in or future.shape[1] < self.n_out:
            raise ValueError(f"batch has {past.shape[1]} past / {future.shape[1]} future frames, "
                             f"the task needs {self.window.n_in} / {self.n_out}")
        mult = self.net.size_multiple
        if past.shape[-1] % mult or past.shape[-2] % mult:
            raise ValueError(f"training crops must be a multiple of {mult} px, got {tuple(past.shape[-2:])}")
        mask = batch[MASK][:, None].to(past.dtype)
        return self.rain_transform.forward(past), self.rain_transform.forward(future), mask

    def to_forecaster(self) -> NetForecaster:
        training = self.nets.training
        forecaster = self.forecaster_cls(dict(self.nets), self.net_hparams, transform=self.rain_transform,
                                         window=self.window, grid=self.grid)
        self.nets.train(training)  # the forecaster shares (and would otherwise flip) the modules
        forecaster.device = self.device
        return forecaster

    def checkpoint_payload(self) -> dict[str, Any]:
        trainer = self._trainer
        started = getattr(self, "_fit_started", None)
        return {
            "forecaster": self.forecaster_cls.name,
            "hparams": self.net_hparams,
            "transform": self.rain_transform.to_dict(),
            "window": self.window.to_dict(),
            "grid": self.grid.to_dict(),
            "data": self.data_description(),
            "metrics": self.validation_metrics(),
            "training": {
                "task": type(self).__name__, "global_step": int(self.global_step),
                "epoch": int(self.current_epoch),
                "n_parameters": sum(p.numel() for p in self.nets.parameters()),
                "wall_seconds": round(time.monotonic() - started, 1) if started else None,
                "device": str(self.device), "precision": str(trainer.precision) if trainer else None,
                "world_size": int(trainer.world_size) if trainer else 1,
            },
            "state_dict": {k: {n: t.detach().float().cpu() for n, t in m.state_dict().items()}
                           for k, m in self.nets.items()},
        }


def rain_weight(rain: torch.Tensor) -> torch.Tensor:
    """DGMR's grid-cell weights ``min(R + 1, 24)`` for observed rain ``R`` (mm/h), any shape:
    an error under heavy rain costs up to 24x one under dry sky, so a blurring network cannot
    buy a low loss by forecasting drizzle everywhere."""
    return (rain + 1.0).clamp(max=24.0)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` (B, T, H, W) over covered pixels; ``mask`` (B, 1, H, W) in {0, 1}."""
    m = mask.expand_as(err)
    return (err * m).sum() / m.sum().clamp(min=1.0)


class RegressionTask(NetTask):
    """Deterministic baselines: minimise the masked MSE (or L1) in transform space; with
    ``rain_weighted`` each pixel's error is weighted by :func:`rain_weight` of the observed
    rain (the remedy of the weighted/balanced losses of DGMR and TrajGRU for forecasts that
    fade heavy rain)."""

    trains = ("convlstm", "simvp")

    def __init__(
        self,
        model: ModelSpec = DEFAULT_REGRESSION,
        loss: Literal["mse", "l1"] = "mse",
        rain_weighted: bool = False,
        n_in: int = 4,
        n_out: int = 12,
        timestep_minutes: float | None = None,
        pixel_size_m: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(model, n_in, n_out, timestep_minutes, pixel_size_m, val_members=1, lr=lr,
                         weight_decay=weight_decay)
        self.save_settings(self.spec)
        self.loss, self.rain_weighted = loss, rain_weighted

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x, y, mask = self.model_space(batch)
        pred = self.net(x, self.n_out)
        err = (pred - y) ** 2 if self.loss == "mse" else (pred - y).abs()
        if self.rain_weighted:
            err = err * rain_weight(batch[FUTURE][:, : self.n_out])
        return masked_mean(err.float(), mask)


class CGANTask(NetTask):
    """Conditional GAN (DGMR-style) with manual optimisation; see the module docstring.

    The grid-cell regulariser is DGMR's weighted L1 between the mean of ``n_samples``
    generated sequences and the observation, with weights ``min(R + 1, 24)`` (R observed,
    mm/h); unlike DGMR the difference is taken in transform space, where the network works.
    """

    trains = ("cgan",)

    def __init__(
        self,
        model: ModelSpec = DEFAULT_CGAN,
        d_base: int = 32,
        d_blocks: int = 4,
        d_frames: int = 4,
        d_crop: int | None = None,
        n_samples: int = 4,
        reg_weight: float = 20.0,
        n_in: int = 4,
        n_out: int = 12,
        timestep_minutes: float | None = None,
        pixel_size_m: float | None = None,
        val_members: int = 4,
        lr: float = 5e-5,
        lr_d: float = 2e-4,
        d_warmup: int = 0,
    ) -> None:
        super().__init__(model, n_in, n_out, timestep_minutes, pixel_size_m, val_members=val_members, lr=lr)
        self.save_settings(self.spec)
        self.automatic_optimization = False
        self.d_spatial = SpatialDiscriminator(d_base, d_blocks, d_frames)
        self.d_temporal = TemporalDiscriminator(d_base, d_blocks, d_crop)
        self.n_samples, self.reg_weight, self.lr_d = n_samples, reg_weight, lr_d
        self.d_warmup = d_warmup

    def generate(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """(B, n_in, H, W) -> (B, samples, n_out, H, W) in transform space, one noise draw each."""
        xs = x.repeat_interleave(samples, dim=0)
        m = self.net.size_multiple
        noise = torch.randn(xs.shape[0], self.net.noise_channels, x.shape[-2] // m, x.shape[-1] // m,
                            device=x.device, dtype=x.dtype)
        return self.net(xs, self.n_out, noise=noise).reshape(x.shape[0], samples, self.n_out,
                                                             *x.shape[-2:])

    def discriminate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Spatial + temporal score of future ``y`` (B, n_out, H, W) after past ``x``: (B,)."""
        return self.d_spatial(y) + self.d_temporal(torch.cat([x, y], dim=1))

    def grid_cell_loss(self, samples: torch.Tensor, y: torch.Tensor, rain: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        return masked_mean((samples.mean(dim=1) - y).abs() * rain_weight(rain), mask)

    def generator_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``g_loss`` = adversarial + ``reg_weight`` x grid-cell; also its parts, the model-space
        batch (``x``, ``y``, ``mask``) and one generated sample per case (``fake``, detached)."""
        x, y, mask = self.model_space(batch)
        samples = self.generate(x, self.n_samples)
        fake = samples[:, 0] * mask  # outside coverage the observation is 0: hide it from D
        adv = -self.discriminate(x, fake).mean()
        reg = self.grid_cell_loss(samples, y, batch[FUTURE][:, : self.n_out], mask)
        return {"g_loss": adv + self.reg_weight * reg, "g_adv": adv, "grid_cell": reg,
                "fake": fake.detach(), "x": x, "y": y, "mask": mask}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.generator_losses(batch)["g_loss"]

    def in_d_warmup(self) -> bool:
        """Whether this batch trains the discriminators alone. A shipped file holds the
        generator only, so a continuation starts with untrained discriminators; updating the
        generator against them leaves the grid-cell term in charge, which pulls the ensemble
        towards its blurred mean (the CPU continuation without warm-up lost its rain: validation
        frequency bias at 1 mm/h 2.0 -> 0.1). Counted in global steps, which a warm-up batch
        advances by one (the discriminator step), so a resumed run does not warm up again."""
        return self.global_step < self.d_warmup

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()
        if self.in_d_warmup():  # one sample per case to show the discriminators, no G step
            with torch.no_grad():
                x, y, mask = self.model_space(batch)
                out = {"x": x, "y": y, "mask": mask, "fake": self.generate(x, 1)[:, 0] * mask}
        else:
            out = self.generator_losses(batch)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(out["g_loss"])
            opt_g.step()

        # the discriminator's grads from the generator step are discarded here
        d_real = self.discriminate(out["x"], out["y"] * out["mask"])
        d_fake = self.discriminate(out["x"], out["fake"])
        d_loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        b = out["x"].shape[0]
        self.log("train/d_loss", d_loss, batch_size=b)
        if "g_loss" not in out:
            return d_loss.detach()
        self.log("train/loss", out["g_loss"], prog_bar=True, batch_size=b)
        self.log_dict({"train/g_adv": out["g_adv"], "train/grid_cell": out["grid_cell"]}, batch_size=b)
        return out["g_loss"].detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # DGMR: Adam, beta1 = 0, generator 5e-5 and discriminator 2e-4 (two time-scale rule)
        betas = (0.0, 0.999)
        return [torch.optim.Adam(self.nets.parameters(), lr=self.lr, betas=betas),
                torch.optim.Adam([*self.d_spatial.parameters(), *self.d_temporal.parameters()],
                                 lr=self.lr_d, betas=betas)]
