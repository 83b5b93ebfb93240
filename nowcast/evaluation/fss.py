"""Fractions skill score per lead time, threshold and neighbourhood scale, pooled over windows.

As pysteps.verification.spatialscores (fss_init / fss_accum / fss_merge / fss_compute): binary
fields R >= threshold are averaged over a ``scale x scale`` moving window (zero padding, the
window placed as scipy.ndimage.uniform_filter places it), and the three sums
sum(S_f^2), sum(S_f S_o), sum(S_o^2) are accumulated over all windows before

    FSS = 1 - (sum S_f^2 - 2 sum S_f S_o + sum S_o^2) / (sum S_f^2 + sum S_o^2).

Masked pixels are non-events in both fields (what pysteps does with NaN), so their values never
matter. FSS is NaN where neither field has an event at that threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from nowcast.evaluation.inputs import check_fields


def box_mean(field: torch.Tensor, size: int) -> torch.Tensor:
    """Moving average over ``size x size`` pixels of (N, H, W), zeros outside, as scipy's
    ``uniform_filter(mode="constant")`` (window from i - size//2 to i + size - 1 - size//2)."""
    if size <= 1:
        return field
    lo, hi = size // 2, size - 1 - size // 2
    # summed-area table: O(1) per pixel whatever the size (a 16 px window is 256x cheaper than pooling)
    padded = F.pad(field, (lo + 1, hi, lo + 1, hi))
    table = padded.cumsum(dim=-2).cumsum(dim=-1)
    h, w = field.shape[-2:]
    box = (table[:, size:size + h, size:size + w] - table[:, :h, size:size + w]
           - table[:, size:size + h, :w] + table[:, :h, :w])
    return box / (size * size)


class FSS(Metric):
    """``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T, n_thresholds, n_scales) float64.
    """

    full_state_update = False

    def __init__(
        self, n_lead: int, thresholds: Sequence[float] = (1.0, 4.0), scales: Sequence[int] = (1, 4, 16)
    ) -> None:
        super().__init__()
        self.n_lead = int(n_lead)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scales = tuple(int(s) for s in scales)
        if any(s < 1 for s in self.scales):
            raise ValueError(f"FSS scales must be >= 1 pixel, got {self.scales}")
        shape = (self.n_lead, len(self.thresholds), len(self.scales))
        for name in ("sum_fct_sq", "sum_fct_obs", "sum_obs_sq"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, mask = check_fields(forecast, target, mask, self.n_lead)
        b, t, h, w = fc.shape
        #: (B, T, K, S, 3) sums of S_f^2, S_f S_o, S_o^2 of the latest update per window (bootstrap)
        self.window_sums = torch.zeros(b, t, len(self.thresholds), len(self.scales), 3, dtype=torch.float64,
                                       device=fc.device)
        for i, thr in enumerate(self.thresholds):
            event_f = ((fc >= thr) & mask).double().reshape(b * t, h, w)
            event_o = ((ob >= thr) & mask).double().reshape(b * t, h, w)
            for j, scale in enumerate(self.scales):
                s_f = box_mean(event_f, scale).reshape(b, t, h, w)
                s_o = box_mean(event_o, scale).reshape(b, t, h, w)
                sums = torch.stack([s_f.square().sum(dim=(2, 3)), (s_f * s_o).sum(dim=(2, 3)),
                                    s_o.square().sum(dim=(2, 3))], dim=-1)  # (B, T, 3)
                self.window_sums[:, :, i, j] = sums
                self.sum_fct_sq[:, i, j] += sums[..., 0].sum(dim=0)
                self.sum_fct_obs[:, i, j] += sums[..., 1].sum(dim=0)
                self.sum_obs_sq[:, i, j] += sums[..., 2].sum(dim=0)

    def compute(self) -> torch.Tensor:
        numer = self.sum_fct_sq - 2.0 * self.sum_fct_obs + self.sum_obs_sq
        denom = self.sum_fct_sq + self.sum_obs_sq
        return torch.where(denom > 0, 1.0 - numer / denom.clamp(min=1e-300), torch.nan)
