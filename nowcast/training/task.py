"""The shared base of every learned forecaster's training: one validation metric for all.

Subclasses (diffusion, ConvLSTM, SimVP, cGAN, the adversarial sampler stage) implement

- ``training_loss(batch) -> Tensor`` (or override ``training_step`` for GAN-style manual
  optimisation), and
- ``to_forecaster() -> Forecaster``: the current weights behind the Forecaster contract,
- ``checkpoint_payload() -> dict``: what :func:`nowcast.models.checkpoint.save_checkpoint`
  stores (hparams, state_dict, transform, window, grid),

and may override ``forecast_batch(batch, batch_idx)`` when validation needs more of the
batch than ``past`` (e.g. the diffusion model's precomputed motion).

Validation is identical for every model: the forecaster predicts ``n_out`` frames from
``past`` in mm/h and :class:`CategoricalScores` accumulates contingency tables over the
whole validation split; ``val/csi_1`` is CSI at 1 mm/h averaged over lead times (the
monitored quantity), ``val/mse`` the masked MSE in mm/h of the ensemble mean.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nowcast.evaluation.categorical import CategoricalScores
from nowcast.models.base import Forecaster
from nowcast.models.checkpoint import save_checkpoint
from nowcast.types import FUTURE, MASK, PAST


class ForecastTask(L.LightningModule):
    def __init__(self, n_out: int = 12, val_members: int = 1, lr: float = 2e-4,
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        self.n_out = n_out
        self.val_members = val_members
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_scores = CategoricalScores(n_lead=n_out, thresholds=(1.0,))
        self.register_buffer("_val_se", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("_val_n", torch.zeros((), dtype=torch.float64), persistent=False)

    # --- to implement -------------------------------------------------------------------
    @abstractmethod
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def to_forecaster(self) -> Forecaster: ...

    @abstractmethod
    def checkpoint_payload(self) -> dict[str, Any]: ...

    # --- shared -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[PAST].shape[0])
        return loss

    def forecast_batch(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Validation forecast (B, M, T_out, H, W) mm/h; seeded per batch so epochs compare."""
        gen = torch.Generator(device=self.device).manual_seed(batch_idx)
        return self.to_forecaster().forecast(batch[PAST], self.n_out, self.val_members, gen)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mean = self.forecast_batch(batch, batch_idx).mean(dim=1)
        target, mask = batch[FUTURE][:, : self.n_out], batch[MASK]
        self.val_scores.update(mean, target, mask)
        m = mask[:, None].expand_as(target)
        self._val_se += ((mean - target) ** 2)[m].double().sum()
        self._val_n += m.sum().double()

    def on_validation_epoch_end(self) -> None:
        csi = self.val_scores.compute()["csi"][:, 0]
        self.log("val/csi_1", torch.nan_to_num(csi, nan=0.0).mean(), prog_bar=True, sync_dist=True)
        se = self.all_gather(self._val_se).sum()
        n = self.all_gather(self._val_n).sum()
        # already gathered over ranks: sync_dist only averages identical values
        self.log("val/mse", se / n.clamp(min=1), sync_dist=True)
        self.val_scores.reset()
        self._val_se.zero_()
        self._val_n.zero_()

    def data_description(self) -> dict[str, Any]:
        """What the model was trained on, for checkpoints: the data module's init arguments."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return {}
        return {k: v for k, v in dict(getattr(datamodule, "hparams", {})).items()
                if isinstance(v, str | int | float | bool | list | dict | type(None))}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def export(self, path: str | Path, weights_dtype: str = "float32", **extra: Any) -> Path:
        """Write a shippable nowcast checkpoint (not a Lightning one) of the current weights.

        ``weights_dtype="float16"`` halves the file; weights are cast back to the module's
        dtype when loaded (``load_state_dict`` copies with conversion).
        """
        payload = {**self.checkpoint_payload(), **extra}
        dtype = getattr(torch, weights_dtype)
        payload["state_dict"] = {
            name: {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
            for name, sd in payload["state_dict"].items()
        }
        payload["weights_dtype"] = weights_dtype
        return save_checkpoint(path, payload)
