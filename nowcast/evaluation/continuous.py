"""Pixel-wise and structural scores per lead time: MSE (mm/h or pixel scale), PSNR, SSIM.

All are streaming torchmetrics Metrics with sum-reduced states (safe under DDP) and take a
deterministic forecast (B, T, H, W) mm/h, the observation (B, T, H, W) mm/h and a coverage mask
(B, H, W) bool. The pixel scale is :func:`nowcast.data.transforms.pixel_scale`
(clip(10 log10(200 R^1.6), 0, 60)/60, R = 0 -> 0).

Pooling: squared errors are summed over every covered pixel of every window before dividing,
separately per lead time. PSNR is 10 log10(1 / MSE_pixel) of that pooled MSE (data range 1), so a
dry window never produces an infinite per-frame PSNR; it is +inf only if the pooled MSE is 0
(identical forecast and observation everywhere). SSIM (Gaussian window 11, sigma 1.5, data
range 1) is computed on frames whose masked pixels are 0 in both fields, and its SSIM map is
averaged over covered pixels only (pooled over windows), so masked pixels change nothing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from nowcast.data.transforms import pixel_scale
from nowcast.evaluation.inputs import check_fields


class _PooledMean(Metric):
    """Per-lead sums and pixel counts; ``compute()`` -> (T,) sum / count (NaN where no pixel).
    ``window_sums`` holds the (sum, count) (B, T) float64 of the latest update per window, from
    which the report pools any subset of windows (paired bootstrap intervals)."""

    full_state_update = False

    def __init__(self, n_lead: int) -> None:
        super().__init__()
        self.n_lead = int(n_lead)
        self.add_state("total", default=torch.zeros(n_lead, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(n_lead, dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """values, mask: (B, T, H, W); adds the covered values per lead time."""
        total, count = (values.double() * mask).sum(dim=(2, 3)), mask.sum(dim=(2, 3)).double()
        self.window_sums = (total, count)
        self.total += total.sum(dim=0)
        self.count += count.sum(dim=0)

    def compute(self) -> torch.Tensor:
        return torch.where(self.count > 0, self.total / self.count.clamp(min=1), torch.nan)


class MSE(_PooledMean):
    """Mean squared error per lead time over covered pixels, in (mm/h)^2 or on the pixel scale.

    ``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T,) float64.
    """

    def __init__(self, n_lead: int, scale: Literal["mm_h", "pixel"] = "mm_h") -> None:
        super().__init__(n_lead)
        if scale not in ("mm_h", "pixel"):
            raise ValueError(f"scale must be 'mm_h' or 'pixel', got {scale!r}")
        self.scale = scale

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, mask = check_fields(forecast, target, mask, self.n_lead)
        if self.scale == "pixel":
            fc, ob = pixel_scale(fc), pixel_scale(ob)
        self._accumulate((fc - ob).square(), mask)


class PSNR(MSE):
    """Peak signal-to-noise ratio (dB, data range 1) per lead time of the pooled pixel-scale MSE.

    ``compute()`` -> (T,) float64; +inf where the pooled MSE is exactly 0.
    """

    def __init__(self, n_lead: int) -> None:
        super().__init__(n_lead, scale="pixel")

    def compute(self) -> torch.Tensor:
        return -10.0 * torch.log10(super().compute())


class SSIM(_PooledMean):
    """Structural similarity on the pixel scale per lead time, averaged over covered pixels.

    ``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T,) float64 in [-1, 1].
    """

    def __init__(self, n_lead: int, kernel_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__(n_lead)
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, mask = check_fields(forecast, target, mask, self.n_lead)
        b, t, h, w = fc.shape
        if min(h, w) < self.kernel_size:
            raise ValueError(f"SSIM needs frames of at least {self.kernel_size} px, got {h}x{w}")
        _, ssim_map = structural_similarity_index_measure(
            pixel_scale(fc).reshape(b * t, 1, h, w),
            pixel_scale(ob).reshape(b * t, 1, h, w),
            gaussian_kernel=True,
            sigma=self.sigma,
            kernel_size=self.kernel_size,
            data_range=1.0,
            reduction="none",
            return_full_image=True,
        )
        self._accumulate(ssim_map.reshape(b, t, h, w), mask)
