"""ExportCheckpoint says once when its monitor is not among the logged metrics."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from lightning.pytorch.trainer.states import TrainerFn

from nowcast.training.callbacks import ExportCheckpoint


def test_a_monitor_that_is_never_logged_is_named_once(caplog):
    callback = ExportCheckpoint(name="diffusion", monitor="val/csi1")  # misspelt: val/csi_1
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.FITTING),
                              callback_metrics={"val/csi_1": 0.2, "val/loss": 1.0})
    with caplog.at_level(logging.WARNING, logger="nowcast.training.callbacks"):
        callback.on_validation_end(trainer, module=None)
        callback.on_validation_end(trainer, module=None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "'val/csi1' is not logged" in lines[0] and "val/csi_1" in lines[0]
    assert "diffusion-best.pt" in lines[0] and callback.best is None
