"""Persistence (Eulerian): the last observed frame, repeated for every lead time."""

from __future__ import annotations

from typing import Any

import torch

from nowcast.models.base import FORECASTERS, Forecaster


@FORECASTERS.register("persistence")
class Persistence(Forecaster):
    """Deterministic: ``rain[b, 0, t] = past[b, -1]`` for every lead time ``t``."""

    summary = "the last scan repeated at every lead time (needs only that scan; the last resort)"

    name = "persistence"
    deterministic = True
    n_in = 1

    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None,
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        last = past[:, -1:]  # (B, 1, H, W)
        return last.unsqueeze(1).expand(-1, 1, n_out, -1, -1).contiguous()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "method": "Eulerian persistence of the last frame"}
