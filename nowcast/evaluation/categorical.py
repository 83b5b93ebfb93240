"""Contingency-table scores (CSI, POD, FAR, frequency bias) as a streaming torchmetrics Metric.

Tables are summed over every window and pixel before a score is taken (DESIGN.md: pooled,
so dry windows never produce 0/0), separately for each lead time and threshold. With
``pool > 1`` forecast and observation are max-pooled over ``pool x pool`` pixels first
(a neighbourhood-tolerant CSI); a pooled cell counts only if all its pixels are covered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from nowcast.evaluation.inputs import check_fields


class CategoricalScores(Metric):
    """Streaming hits / misses / false alarms per (lead time, threshold).

    ``update(forecast, target, mask)``:
        forecast: (B, T, H, W) mm/h (deterministic; pass an ensemble mean or one member)
        target:   (B, T, H, W) mm/h
        mask:     (B, H, W) or (B, T, H, W) bool, True where the pixel is scored
    Events are R >= threshold (pysteps' det_cat_fct uses R > threshold; they differ only for
    values exactly on a threshold). Raises ValueError on bad shapes or non-finite covered values.
    ``compute()`` -> dict of (T, K) tensors: ``csi``, ``pod``, ``far``, ``bias`` (NaN where
    undefined, e.g. no event observed or forecast at a threshold).
    """

    full_state_update = False

    def __init__(self, n_lead: int, thresholds: Sequence[float] = (1.0,), pool: int = 1) -> None:
        super().__init__()
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pool = int(pool)
        self.n_lead = int(n_lead)
        shape = (n_lead, len(self.thresholds))
        for name in ("hits", "misses", "false_alarms", "correct_negatives"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, mask = check_fields(forecast, target, mask, self.n_lead)
        valid = mask.float()
        if self.pool > 1:
            k = self.pool
            fc = F.max_pool2d(fc, k, k)
            ob = F.max_pool2d(ob, k, k)
            valid = -F.max_pool2d(-valid, k, k)  # min-pool: all pixels covered
        valid = valid > 0.5
        counts = []
        for j, thr in enumerate(self.thresholds):
            f, o = fc >= thr, ob >= thr
            table = [(a & b & valid).sum(dim=(2, 3)).double()
                     for a, b in ((f, o), (~f, o), (f, ~o), (~f, ~o))]
            for state, per_window in zip((self.hits, self.misses, self.false_alarms, self.correct_negatives),
                                         table, strict=True):
                state[:, j] += per_window.sum(dim=0)
            counts.append(torch.stack(table[:3], dim=-1))
        #: (B, T, K, 3) hits, misses, false alarms of the latest update per window (bootstrap)
        self.window_counts = torch.stack(counts, dim=2)

    def compute(self) -> dict[str, torch.Tensor]:
        h, m, fa = self.hits, self.misses, self.false_alarms
        nan = torch.tensor(float("nan"), dtype=h.dtype, device=h.device)

        def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
            return torch.where(den > 0, num / den.clamp(min=1), nan)

        return {
            "csi": ratio(h, h + m + fa),
            "pod": ratio(h, h + m),
            "far": ratio(fa, h + fa),
            "bias": ratio(h + fa, h + m),
        }
