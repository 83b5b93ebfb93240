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


#: how a pooled ratio r = sum(num) / sum(den) becomes the score: per lead time before the mean over
#: lead times ("ratio": r, "psnr": 10 log10(1 / r) of a pixel-scale MSE, "one_minus": 1 - r for the
#: FSS), or after it ("distance_from_one": |mean - 1|, for a frequency bias, 0 = best)
TRANSFORMS = ("ratio", "psnr", "one_minus", "distance_from_one")


@dataclass(frozen=True)
class Pooled:
    """Per-window, per-lead ``numerator`` and ``denominator`` (W, T) of the score: the mean over lead
    times of sum_w(num) / sum_w(den) (lead times with no denominator are skipped), through
    ``transform`` (:data:`TRANSFORMS`)."""

    numerator: np.ndarray
    denominator: np.ndarray
    transform: str = "ratio"

    def __post_init__(self) -> None:  # (W,) = one lead time
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {TRANSFORMS}")
        for name in ("numerator", "denominator"):
            x = np.asarray(getattr(self, name), dtype=np.float64)
            object.__setattr__(self, name, x[:, None] if x.ndim == 1 else x)

    def value(self) -> float:
        return float(self.score(np.sum(self.numerator, axis=0), np.sum(self.denominator, axis=0)))

    def subset(self, rows: Sequence[int]) -> Pooled:
        return Pooled(self.numerator[list(rows)], self.denominator[list(rows)], self.transform)

    def score(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """(..., T) sums -> (...) the score, NaN where every lead time is undefined."""
        with np.errstate(invalid="ignore", divide="ignore", all="ignore"):
            ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
            if self.transform == "psnr":
                ratio = 10.0 * np.log10(1.0 / ratio)
            elif self.transform == "one_minus":
                ratio = 1.0 - ratio
            ratio = np.where(np.isfinite(ratio), ratio, np.nan)
            empty = np.isnan(ratio).all(axis=-1)
            mean = np.nanmean(np.where(empty[..., None], 0.0, ratio), axis=-1)
            mean = np.where(empty, np.nan, mean)
            return np.abs(mean - 1.0) if self.transform == "distance_from_one" else mean


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
    sums = [weights @ x for x in arrays]  # (R, T) each
    diffs = a.score(sums[0], sums[1]) - b.score(sums[2], sums[3])
    diffs = diffs[np.isfinite(diffs)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = (np.percentile(diffs, [tail, 100.0 - tail]) if len(diffs) else (np.nan, np.nan))
    return Difference(a.value() - b.value(), float(low), float(high), level, n)


def pooled_from_counts(counts: np.ndarray | Sequence) -> Pooled:
    """CSI as a :class:`Pooled` from per-window, per-lead [hits, misses, false alarms] (W, T, 3)."""
    c = np.asarray(counts, dtype=np.float64)
    return Pooled(c[..., 0], c.sum(axis=-1))
