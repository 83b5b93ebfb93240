"""ExportCheckpoint: a fit exports its best weights; `validate` of a given file exports nothing."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from nowcast.data.synthetic import synthetic_rain
from nowcast.training.baseline_tasks import RegressionTask
from nowcast.training.callbacks import ExportCheckpoint
from nowcast.types import FUTURE, MASK, PAST


def _loader(n: int) -> DataLoader:
    rain = torch.from_numpy(np.stack([synthetic_rain(7, 32, 32, seed=s) for s in (1, 2)]))
    batch = {PAST: torch.nan_to_num(rain[:, :4]), FUTURE: torch.nan_to_num(rain[:, 4:]),
             MASK: ~torch.isnan(rain).any(dim=1)}
    return DataLoader([batch] * n, batch_size=None)


def _trainer(export: ExportCheckpoint) -> L.Trainer:
    return L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     callbacks=[export])


def test_fit_exports_and_validate_does_not(tmp_path):
    task = RegressionTask("convlstm:size=tiny", n_out=3)
    _trainer(ExportCheckpoint(dirpath=str(tmp_path / "fit"), every_n_train_steps=0)).fit(
        task, _loader(2), _loader(1))
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["model-best.pt", "model-last.pt"]

    scored = RegressionTask(f"convlstm:size=tiny,checkpoint={tmp_path / 'fit' / 'model-best.pt'}", n_out=3)
    trainer = _trainer(ExportCheckpoint(dirpath=str(tmp_path / "validate")))
    trainer.validate(scored, _loader(1))
    assert "val/csi_1" in trainer.callback_metrics
    assert not (tmp_path / "validate").exists()


def test_periodic_exports_are_kept_under_their_step(tmp_path):
    task = RegressionTask("convlstm:size=tiny", n_out=3)
    _trainer(ExportCheckpoint(dirpath=str(tmp_path), every_n_train_steps=2, keep_periodic=True)).fit(
        task, _loader(5), _loader(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-best.pt", "model-last.pt", "model-latest.pt", "model-step2.pt", "model-step4.pt"]
    step2 = torch.load(tmp_path / "model-step2.pt", weights_only=True)
    assert step2["training"]["global_step"] == 2
