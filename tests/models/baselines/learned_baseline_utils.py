"""Helpers of the learned-baseline tests: one small synthetic batch, a one-batch fit."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from nowcast.data.synthetic import synthetic_rain
from nowcast.types import FUTURE, MASK, PAST

N_IN, N_OUT, SIZE = 4, 6, 32  # a short window keeps the recurrent tests fast


def synthetic_batch() -> dict[str, torch.Tensor]:
    """Two 32x32 synthetic windows (4 past, 12 future frames), mm/h with NaN -> 0 and a mask."""
    rain = torch.from_numpy(np.stack([synthetic_rain(N_IN + N_OUT, SIZE, SIZE, seed=s) for s in (1, 2)]))
    mask = ~torch.isnan(rain).any(dim=1)
    rain = torch.nan_to_num(rain, nan=0.0)
    return {PAST: rain[:, :N_IN], FUTURE: rain[:, N_IN:], MASK: mask}


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


def fit_one_batch(task: L.LightningModule, batch: dict[str, torch.Tensor], batches: int) -> L.Trainer:
    """Train ``task`` on ``batch`` alone, ``batches`` times (one epoch), then validate once on it."""
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(task, DataLoader(_Repeat(batch, batches), batch_size=None),
                DataLoader(_Repeat(batch, 1), batch_size=None))
    return trainer
