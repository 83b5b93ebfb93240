"""Lightning callbacks shared by every :class:`ForecastTask`: export of shippable checkpoints.

Lightning's own ``ModelCheckpoint`` keeps the training state (``last.ckpt``, resumption with
``ckpt_path="last"``); :class:`ExportCheckpoint` writes nowcast checkpoints (weights plus what
they were built for, loadable with ``weights_only=True``) that forecasters load directly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from nowcast.training.task import ForecastTask

log = logging.getLogger(__name__)


class ExportCheckpoint(L.Callback):
    """Write ``<dirpath>/<name>-best.pt`` whenever ``monitor`` improves, ``<name>-latest.pt`` every
    ``every_n_train_steps`` steps (so a killed run leaves its latest weights) and
    ``<name>-last.pt`` at the end of fit; with ``keep_periodic`` also ``<name>-step<N>.pt`` at each
    of those steps (to score a run's weights along its training, not only its last).

    Args:
        dirpath: output folder (None: ``<trainer.log_dir or default_root_dir>/export``).
        name: file-name stem (e.g. the forecaster's registry name).
        monitor: validation metric to maximise or minimise.
        mode: "max" or "min".
        every_n_train_steps: period of the latest-weights export (0 = never).
        weights_dtype: "float32" or "float16" (half-size files for shipping).
        keep_periodic: keep every periodic export under its step's name as well.
    """

    def __init__(self, dirpath: str | None = None, name: str = "model", monitor: str = "val/csi_1",
                 mode: str = "max", every_n_train_steps: int = 500, weights_dtype: str = "float32",
                 keep_periodic: bool = False) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.dirpath = Path(dirpath) if dirpath else None
        self.name, self.monitor, self.mode = name, monitor, mode
        self.every_n_train_steps = every_n_train_steps
        self.weights_dtype = weights_dtype
        self.keep_periodic = keep_periodic
        self.best: float | None = None
        self._warned_missing = False

    def _dir(self, trainer: L.Trainer) -> Path:
        if self.dirpath is None:
            self.dirpath = Path(trainer.log_dir or trainer.default_root_dir) / "export"
        return self.dirpath

    def _export(self, trainer: L.Trainer, module: ForecastTask, suffix: str) -> None:
        # every rank must agree on the directory; only rank 0 writes
        path = self._dir(trainer) / f"{self.name}-{suffix}.pt"
        if trainer.is_global_zero:
            module.export(path, weights_dtype=self.weights_dtype)
            log.info("exported %s (step %d)", path, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, module: ForecastTask, *args: object) -> None:
        n = self.every_n_train_steps
        if n > 0 and trainer.global_step > 0 and trainer.global_step % n == 0:
            self._export(trainer, module, "latest")
            if self.keep_periodic:
                self._export(trainer, module, f"step{trainer.global_step}")

    def on_validation_end(self, trainer: L.Trainer, module: ForecastTask) -> None:
        # `nowcast train validate` scores a model; only a fit produces weights worth exporting
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if self.monitor not in trainer.callback_metrics:
            if not self._warned_missing:  # a misspelt monitor would otherwise never write -best.pt
                log.warning("%s: %r is not logged by this task (logged: %s), so no %s-best.pt is written",
                            type(self).__name__, self.monitor, ", ".join(sorted(trainer.callback_metrics)),
                            self.name)
                self._warned_missing = True
            return
        value = float(torch.as_tensor(trainer.callback_metrics[self.monitor]))
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best = value
            self._export(trainer, module, "best")

    def on_fit_end(self, trainer: L.Trainer, module: ForecastTask) -> None:
        self._export(trainer, module, "last")

    def state_dict(self) -> dict[str, float | None]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        self.best = state_dict.get("best")
