"""Input checks shared by the streaming scores, and the choice of one field from an ensemble.

Every score takes rain in mm/h: a forecast (B, T, H, W) (or an ensemble (B, M, T, H, W) where a
score needs members), the observation (B, T, H, W) and a coverage mask (B, H, W) or (B, T, H, W)
bool, True where the pixel is scored. Masked pixels may hold anything (NaN included).
"""

from __future__ import annotations

from typing import Literal

import torch

#: How a deterministic field is taken from an ensemble (B, M, T, H, W).
Reduction = Literal["mean", "pm_mean", "member0"]


def check_fields(
    forecast: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, n_lead: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a deterministic forecast and return ``(forecast, target, mask)``.

    forecast, target: (B, T, H, W) mm/h with T == ``n_lead``; mask: (B, H, W) or (B, T, H, W).
    Returns float32 fields with masked pixels set to 0 in both, and the mask as (B, T, H, W) bool.
    Raises ValueError on a shape mismatch or on non-finite values in covered pixels.
    """
    if forecast.ndim != 4 or forecast.shape != target.shape:
        raise ValueError(
            f"forecast and target must both be (B, T, H, W); got {tuple(forecast.shape)} and "
            f"{tuple(target.shape)}"
        )
    if forecast.shape[1] != n_lead:
        raise ValueError(f"expected {n_lead} lead times, got T = {forecast.shape[1]}")
    mask = expand_mask(mask, target.shape)
    fc, ob = forecast.float(), target.float()
    for name, x in (("forecast", fc), ("target", ob)):
        if not (torch.isfinite(x) | ~mask).all():  # no boolean indexing: 15x faster
            raise ValueError(f"{name} has non-finite values in covered (mask=True) pixels")
    zero = torch.zeros((), dtype=fc.dtype, device=fc.device)
    return torch.where(mask, fc, zero), torch.where(mask, ob, zero), mask


def expand_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A (B, H, W) or (B, T, H, W) mask as a (B, T, H, W) bool tensor matching ``shape``."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (True = covered), got {mask.dtype}")
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[0] != shape[0] or mask.shape[2:] != shape[2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit fields of shape {tuple(shape)}")
    return mask.expand(shape)


def check_ensemble(ensemble: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ValueError unless ``ensemble`` is (B, M, T, H, W) matching ``target`` (B, T, H, W)."""
    if ensemble.ndim != 5 or target.ndim != 4 or ensemble.shape[:1] + ensemble.shape[2:] != target.shape:
        raise ValueError(
            f"forecast ensemble must be (B, M, T, H, W) and target (B, T, H, W); got "
            f"{tuple(ensemble.shape)} and {tuple(target.shape)}"
        )


def zero_uncovered(ensemble: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``ensemble`` (B, M, T, H, W) with 0 where ``mask`` (B, H, W) bool is False, so that values in
    uncovered pixels cannot reach a reduction that pools pixels (the probability-matched mean)."""
    covered = expand_mask(mask, ensemble[:, 0].shape)[:, None]
    return torch.where(covered, ensemble, torch.zeros((), dtype=ensemble.dtype, device=ensemble.device))


def reduce_ensemble(ensemble: torch.Tensor, how: Reduction) -> torch.Tensor:
    """One field (B, T, H, W) from an ensemble (B, M, T, H, W): the member mean (mm/h), the
    probability-matched mean (:func:`probability_matched_mean`) or member 0."""
    if how == "mean":
        return ensemble.mean(dim=1)
    if how == "pm_mean":
        return probability_matched_mean(ensemble)
    if how == "member0":
        return ensemble[:, 0]
    raise ValueError(f"unknown ensemble reduction {how!r}; use 'mean', 'pm_mean' or 'member0'")


def probability_matched_mean(ensemble: torch.Tensor) -> torch.Tensor:
    """Probability-matched ensemble mean (Ebert 2001): the pattern of the member mean with the
    intensities of the members, per forecast and lead time.

    The mean's pixels keep their rank and take, in that order, N quantiles of the pooled
    member values (N = pixels per field); as pysteps'
    ``postprocessing.probmatching.nonparam_match_empirical_cdf`` does, pixels where the mean is
    at its minimum (dry) stay at the pooled minimum, and the pooled distribution's lowest values
    are set to that minimum when the members are wet on more pixels than the mean. The plain mean
    smooths intense rain away; this keeps the members' rain amounts.

    Args:
        ensemble: (B, M, T, H, W) mm/h, finite.

    Returns:
        (B, T, H, W) mm/h.
    """
    b, m, t, h, w = ensemble.shape
    n = h * w
    mean = ensemble.mean(dim=1).reshape(b, t, n)
    pooled = ensemble.transpose(1, 2).reshape(b, t, m * n).sort(dim=-1).values
    target = pooled[..., m // 2::m][..., :n]  # N evenly spaced quantiles of the pooled values
    dry_mean = mean.amin(dim=-1, keepdim=True)
    dry_target = target[..., :1]
    n_wet = (mean > dry_mean).sum(dim=-1, keepdim=True)
    ranks = torch.arange(n, device=ensemble.device).expand_as(target)
    target = torch.where(ranks < n - n_wet, dry_target, target)
    out = torch.empty_like(mean).scatter_(-1, mean.argsort(dim=-1), target)
    out = torch.where(mean == dry_mean, dry_target, out)
    return out.reshape(b, t, h, w)
