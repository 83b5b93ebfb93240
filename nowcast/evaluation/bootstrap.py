"""Paired bootstrap intervals for differences of pooled scores between two models.

Every score of the report's summary is, per lead time, a ratio of sums over windows (CSI = sum
hits / sum (hits + misses + false alarms), CRPS and MSE = sum over pixels / number of pixels),
averaged over lead times. A :class:`Pooled` holds a model's per-window, per-lead numerator and
denominator; :func:`paired_difference` resamples the windows with
replacement (the same draw for both models: paired, so the windows' common difficulty cancels) and
returns the difference of the pooled scores with its percentile interval. Windows of one event
overlap in time and are correlated, so these intervals are, if anything, too narrow: a difference
whose interval contains 0 is a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: bootstrap resamples of every interval
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Pooled:
    """Per-window, per-lead ``numerator`` and ``denominator`` (W, T) of the score
    mean over lead times of sum_w(num) / sum_w(den) (lead times with no denominator are skipped)."""

    numerator: np.ndarray
    denominator: np.ndarray

    def __post_init__(self) -> None:  # (W,) = one lead time
        for name in ("numerator", "denominator"):
            x = np.asarray(getattr(self, name), dtype=np.float64)
            object.__setattr__(self, name, x[:, None] if x.ndim == 1 else x)

    def value(self) -> float:
        return float(_score(np.sum(self.numerator, axis=0), np.sum(self.denominator, axis=0)))

    def subset(self, rows: Sequence[int]) -> Pooled:
        return Pooled(self.numerator[list(rows)], self.denominator[list(rows)])


def _score(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """(..., T) sums -> (...) mean over lead times of num / den, NaN where every lead is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        return np.nanmean(ratio, axis=-1) if ratio.shape[-1] else np.full(ratio.shape[:-1], np.nan)


@dataclass(frozen=True)
class Difference:
    """``a - b`` of two pooled scores and its ``level`` percentile interval [low, high]."""

    value: float
    low: float
    high: float
    level: float
    n_windows: int

    @property
    def is_tie(self) -> bool:
        """True if the interval contains 0 (noise could reverse the order), or is undefined."""
        return not (self.low > 0 or self.high < 0)


def paired_difference(a: Pooled, b: Pooled, n_resamples: int = N_RESAMPLES, level: float = 0.95,
                      seed: int = 0) -> Difference:
    """Pooled score of ``a`` minus that of ``b`` over the same windows, with a paired percentile
    bootstrap interval (windows resampled with replacement, ``n_resamples`` times)."""
    arrays = [a.numerator, a.denominator, b.numerator, b.denominator]
    n = len(arrays[0])
    if n == 0 or any(x.shape != arrays[0].shape for x in arrays):
        raise ValueError(f"both models need the same non-empty windows, got {[x.shape for x in arrays]}")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)  # (R, W)
    with np.errstate(invalid="ignore"):
        sums = [weights @ x for x in arrays]  # (R, T) each
        diffs = _score(sums[0], sums[1]) - _score(sums[2], sums[3])
    diffs = diffs[np.isfinite(diffs)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = (np.percentile(diffs, [tail, 100.0 - tail]) if len(diffs) else (np.nan, np.nan))
    return Difference(a.value() - b.value(), float(low), float(high), level, n)


def pooled_from_counts(counts: np.ndarray | Sequence) -> Pooled:
    """CSI as a :class:`Pooled` from per-window, per-lead [hits, misses, false alarms] (W, T, 3)."""
    c = np.asarray(counts, dtype=np.float64)
    return Pooled(c[..., 0], c.sum(axis=-1))
