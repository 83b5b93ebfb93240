"""Radially averaged power spectra (RAPSD) per lead time and the log spectral distance RALSD.

:func:`rapsd` reproduces ``pysteps.utils.spectral.rapsd(field, fft_method=numpy.fft,
return_freq=True, d=...)`` for a batch of fields: |FFT|^2 / (H W), averaged over rings of
integer (rounded) radius r = 0 .. L/2 - 1 (L = max(H, W); L odd: 0 .. (L-1)/2), with frequencies
r / (L d) cycles per unit of ``d``.

:class:`RAPSD` averages these spectra over every window (per lead time) for the forecast and the
observation. Spectra are taken on the full crop, with masked pixels set to 0 in both fields
(as the data loader already does for the observation), so values in masked pixels do not
matter; edges of coverage then appear identically in both spectra. Fields are in mm/h.

RALSD per lead time is the log spectral distance between the two window-averaged spectra::

    RALSD = sqrt( mean_k (10 log10 P_f(k) - 10 log10 P_o(k))^2 )

over wavenumbers k (DC included) where both mean spectra are positive (NaN if none), in dB.
Averaging spectra before taking logs keeps dry windows (zero power) well defined.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from nowcast.evaluation.inputs import check_fields


def _ring_index(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Rounded radius of each pixel of the fftshift-ed spectrum (H*W,), and the number of rings."""
    def centred(n: int) -> torch.Tensor:
        return torch.arange(-(n // 2), n - n // 2, device=device, dtype=torch.float64)

    yc, xc = centred(h)[:, None], centred(w)[None, :]
    radius = torch.sqrt(xc * xc + yc * yc).round().long().reshape(-1)
    size = max(h, w)
    n_bins = size // 2 + 1 if size % 2 == 1 else size // 2
    return radius, n_bins


def rapsd(field: torch.Tensor, d: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectral density of fields (..., H, W).

    Returns ``(power (..., K) float64, freq (K,) float64)`` with K = max(H, W) // 2 (+1 if odd).
    """
    h, w = field.shape[-2:]
    psd = torch.fft.fftshift(torch.fft.fft2(field.double()), dim=(-2, -1)).abs().square() / (h * w)
    radius, n_bins = _ring_index(h, w, field.device)
    keep = radius < n_bins
    flat = psd.reshape(-1, h * w)[:, keep]
    idx = radius[keep]
    sums = torch.zeros(flat.shape[0], n_bins, dtype=torch.float64, device=field.device)
    sums.index_add_(1, idx, flat)
    counts = torch.bincount(idx, minlength=n_bins).double()
    freq = torch.arange(n_bins, dtype=torch.float64) / (max(h, w) * d)
    return (sums / counts).reshape(*field.shape[:-2], n_bins), freq


def log_spectral_distance(power_f: torch.Tensor, power_o: torch.Tensor) -> torch.Tensor:
    """RALSD (dB) between spectra (..., K) over bins where both are positive; (...,), NaN if none."""
    valid = (power_f > 0) & (power_o > 0)
    one = torch.ones((), dtype=power_f.dtype, device=power_f.device)
    diff = 10.0 * torch.log10(torch.where(valid, power_f, one) / torch.where(valid, power_o, one))
    n = valid.sum(dim=-1)
    msd = (diff.square() * valid).sum(dim=-1) / n.clamp(min=1)
    return torch.where(n > 0, msd.sqrt(), torch.nan)


class RAPSD(Metric):
    """Window-averaged RAPSD of forecast and observation per lead time, and RALSD.

    ``update(forecast (B,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``; every update
    must have the same H, W. ``compute()`` -> dict with ``forecast`` and ``observed`` (T, K)
    mean power ((mm/h)^2), ``freq`` (K,) cycles per km (with ``pixel_size_km``), ``ralsd`` (T,) dB.
    ``max_bins`` bounds the frame size (K <= max_bins) since states have a fixed shape.
    """

    full_state_update = False

    def __init__(self, n_lead: int, pixel_size_km: float = 2.0, max_bins: int = 1024) -> None:
        super().__init__()
        self.n_lead = int(n_lead)
        self.pixel_size_km = float(pixel_size_km)
        self.max_bins = int(max_bins)
        shape = (self.n_lead, self.max_bins)
        self.add_state("power_f", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("power_o", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        zeros = torch.zeros(self.n_lead, dtype=torch.float64)
        self.add_state("n_fields", default=zeros, dist_reduce_fx="sum")
        # frame size (H, W); the same on every update and every process, so "max" just shares it
        self.add_state("frame", default=torch.zeros(2, dtype=torch.long), dist_reduce_fx="max")

    def update(self, forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        fc, ob, _ = check_fields(forecast, target, mask, self.n_lead)
        frame = torch.tensor(fc.shape[-2:], dtype=torch.long, device=self.frame.device)
        if self.frame.any() and not torch.equal(frame, self.frame):
            raise ValueError(f"RAPSD needs one frame size; got {tuple(frame.tolist())} after "
                             f"{tuple(self.frame.tolist())}")
        p_f, _ = rapsd(fc)
        p_o, _ = rapsd(ob)
        k = p_f.shape[-1]
        if k > self.max_bins:
            raise ValueError(f"frames of {tuple(fc.shape[-2:])} need {k} spectral bins > "
                             f"max_bins={self.max_bins}")
        self.frame = frame
        self.power_f[:, :k] += p_f.sum(dim=0)
        self.power_o[:, :k] += p_o.sum(dim=0)
        self.n_fields += fc.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        h, w = (int(v) for v in self.frame.tolist())
        if h == 0:
            raise RuntimeError("RAPSD.compute() called before any update")
        _, n_bins = _ring_index(h, w, self.frame.device)
        n = self.n_fields.clamp(min=1)[:, None]
        power_f, power_o = self.power_f[:, :n_bins] / n, self.power_o[:, :n_bins] / n
        freq = torch.arange(n_bins, dtype=torch.float64) / (max(h, w) * self.pixel_size_km)
        return {"forecast": power_f, "observed": power_o, "freq": freq,
                "ralsd": log_spectral_distance(power_f, power_o)}
