"""Ensemble verification pooled over windows: rank histogram, reliability, ROC, Brier score, spread–skill.

``EnsembleScores.update(ensemble (B, M, T, H, W) mm/h, target (B, T, H, W) mm/h, mask (B, H, W) bool)``
pools every covered pixel of every window; ``compute()`` returns plain floats and lists. Scores are
kept per lead-time group (:func:`lead_groups`: 12 leads -> 5–20, 25–40, 45–60 min) and, for the
spread–skill relation, per lead time. Only ensembles (M > 1) are scored here: a deterministic model
has no rank, spread or probability beyond 0 and 1.

What comes from pysteps (``pysteps.verification``): the reliability diagram and the ROC curve are
accumulated and computed by ``probscores.reldiag_*`` and ``probscores.ROC_curve_*`` (exceedance
``R >= threshold``, the probability being the fraction of members at or above it, as
``pysteps.postprocessing.ensemblestats.excprob``). Written here, and checked against pysteps in
``tests/evaluation/test_ensemble_scores.py``:

- the rank histogram: ``ensscores.rankhist_accum``'s rule (pairs where the observation and every
  member are below ``rank_min`` are left out; values below it tie, and a tie puts the observation at
  a uniformly random rank among the tied members), vectorised (pysteps increments one bin per
  pixel in a Python loop, about a second per 256² window of 12 lead times) and with each tie's
  random rank replaced by its expectation (no sampling noise, the same counts however the windows
  are batched);
- the Brier score and its skill against the sample climatology, ``1 - BS / (o (1 - o))`` with ``o``
  the observed event frequency of the same pixels;
- spread and skill: spread = the square root of the mean unbiased member variance (half pysteps'
  ``ensscores.ensemble_spread(..., "MSE")``, a mean over member pairs), skill = the RMSE of the
  ensemble mean (pysteps' ``ensemble_skill`` averages the members' own RMSEs, a different
  quantity); their ratio is scaled by
  ``sqrt((M + 1) / M)`` so that a statistically consistent ensemble of M members scores 1
  (Fortin et al. 2014, J. Hydrometeor.); below 1 the ensemble is under-dispersive.

The rank histogram's flatness is summarised by the reliability index ``sum_i |f_i - 1 / (M + 1)|``
(Delle Monache et al. 2006; 0 = flat) and by the share of observations outside the ensemble (ranks
1 and M + 1) against the ``2 / (M + 1)`` of a consistent ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nowcast.evaluation.inputs import check_ensemble, expand_mask

#: mm/h below which values tie in the rank histogram (pysteps' example uses 0.1)
RANK_MIN = 0.1


def lead_groups(n_lead: int, n_groups: int = 3) -> list[tuple[int, int]]:
    """Contiguous lead-index ranges ``[start, stop)``, as equal as possible (12 -> 0-4, 4-8, 8-12)."""
    edges = sorted({int(round(x)) for x in np.linspace(0, n_lead, min(n_groups, n_lead) + 1)})
    return list(zip(edges[:-1], edges[1:], strict=True))


def rank_counts(members: np.ndarray, observed: np.ndarray, rank_min: float | None) -> np.ndarray:
    """Rank-histogram counts (M + 1,) float64 of ``observed`` (N,) among ``members`` (M, N) by pysteps'
    ``rankhist_accum`` rule (see the module docstring), a tie's random rank replaced by its
    expectation: an observation tied with ``k`` members adds ``1 / (k + 1)`` to each of the ``k + 1``
    ranks it could take. The counts are then the same however the pixels are split into updates.
    Non-finite pairs are left out."""
    m = members.shape[0]
    keep = np.isfinite(observed) & np.isfinite(members).all(axis=0)
    if rank_min is not None:
        keep &= (observed >= rank_min) | (members >= rank_min).any(axis=0)
    f, o = members[:, keep], observed[keep]
    if rank_min is not None:
        f = np.where(f < rank_min, rank_min - 1, f)
        o = np.where(o < rank_min, rank_min - 1, o)
    below = (f < o).sum(axis=0)
    ties = (f == o).sum(axis=0)
    share = 1.0 / (ties + 1)  # spread over ranks below .. below + ties: a step up, then down
    steps = (np.bincount(below, weights=share, minlength=m + 2)
             - np.bincount(below + ties + 1, weights=share, minlength=m + 2))
    return np.cumsum(steps)[: m + 1]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class EnsembleScores:
    """Streaming ensemble scores of one model (numpy on the CPU; see the module docstring).

    Args:
        n_lead: lead times T of every update.
        members: ensemble size M (> 1).
        thresholds: mm/h exceedance thresholds of the reliability diagram, ROC and Brier score.
        n_groups: lead-time groups (:func:`lead_groups`).
        rank_min: mm/h below which values tie in the rank histogram (None: no threshold).
        n_bins: probability bins of the reliability diagram.
    """

    def __init__(self, n_lead: int, members: int, thresholds: Sequence[float] = (1.0, 4.0),
                 n_groups: int = 3, rank_min: float | None = RANK_MIN, n_bins: int = 10) -> None:
        from pysteps.verification import probscores

        if members < 2:
            raise ValueError(f"ensemble scores need at least 2 members, got {members}")
        self.n_lead, self.members = int(n_lead), int(members)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.groups = lead_groups(self.n_lead, n_groups)
        self.rank_min = rank_min
        g, k = len(self.groups), len(self.thresholds)
        self.ranks = np.zeros((g, self.members + 1))
        # min_count 0: pysteps drops bins with fewer samples per accumulation, i.e. per window here
        self.reldiag = [[probscores.reldiag_init(t, n_bins, min_count=0) for _ in self.groups]
                        for t in self.thresholds]
        # one probability threshold per possible ensemble probability 0, 1/M, ..., 1, computed as the
        # probabilities are (count / M): pysteps' linspace puts e.g. 3/10 one rounding step above
        # 3 / 10, so pixels with exactly 3 of 10 members would miss their own point of the curve
        self.roc = [[probscores.ROC_curve_init(t, self.members + 1) for _ in self.groups]
                    for t in self.thresholds]
        for curves in self.roc:
            for curve in curves:
                curve["prob_thrs"] = np.arange(self.members + 1) / self.members
        self.brier = np.zeros((k, g, 3))  # sum (p - o)^2, sum o, pixels
        self.spread = np.zeros((self.n_lead, 3))  # sum member variance, sum squared error of the mean, pixels

    def update(self, ensemble: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        from pysteps.verification import probscores

        check_ensemble(ensemble, target)
        if ensemble.shape[1] != self.members or ensemble.shape[2] != self.n_lead:
            raise ValueError(f"expected {self.members} members and {self.n_lead} lead times, got "
                             f"{tuple(ensemble.shape)}")
        covered = expand_mask(mask, target.shape).cpu().numpy()  # (B, T, H, W)
        ens = ensemble.detach().float().cpu().numpy()
        obs = target.detach().float().cpu().numpy()
        if not (np.isfinite(obs) | ~covered).all() or not (np.isfinite(ens) | ~covered[:, None]).all():
            raise ValueError("non-finite values in covered (mask=True) pixels")
        var = ens.var(axis=1, ddof=1, dtype=np.float64)  # sums of ~1e6 terms: float64
        sq_err = (ens.mean(axis=1, dtype=np.float64) - obs) ** 2
        self.spread[:, 0] += np.where(covered, var, 0).sum(axis=(0, 2, 3))
        self.spread[:, 1] += np.where(covered, sq_err, 0).sum(axis=(0, 2, 3))
        self.spread[:, 2] += covered.sum(axis=(0, 2, 3))
        for g, (a, b) in enumerate(self.groups):
            cov = covered[:, a:b]
            members = np.moveaxis(ens[:, :, a:b], 1, 0)[:, cov]  # (M, N covered pixels)
            observed = obs[:, a:b][cov]
            self.ranks[g] += rank_counts(members, observed, self.rank_min)
            for j, thr in enumerate(self.thresholds):
                prob = (members >= thr).sum(axis=0) / self.members  # exactly k / M, as the ROC thresholds
                event = observed >= thr
                probscores.reldiag_accum(self.reldiag[j][g], prob, observed)
                probscores.ROC_curve_accum(self.roc[j][g], prob, observed)
                self.brier[j, g] += [((prob - event) ** 2).sum(), event.sum(), event.size]

    def compute(self) -> dict[str, Any]:
        from pysteps.verification import probscores

        m = self.members
        out: dict[str, Any] = {"members": m, "thresholds": list(self.thresholds),
                               "lead_groups": [list(g) for g in self.groups]}
        total = self.ranks.sum(axis=0)
        out["rank_histogram"] = {
            "rank_min": self.rank_min,
            "counts": self.ranks.tolist(),
            "counts_all": total.tolist(),
            **flatness(total),
            "per_group": [flatness(c) for c in self.ranks],
        }
        rel, roc, brier = {}, {}, {}
        for j, thr in enumerate(self.thresholds):
            key = str(thr)
            rel[key], roc[key], brier[key] = [], [], []
            for g in range(len(self.groups)):
                diag = self.reldiag[j][g]
                with np.errstate(invalid="ignore", divide="ignore"):
                    forecast_p, observed_f = probscores.reldiag_compute(diag)
                rel[key].append({"forecast_probability": [_finite(x) for x in forecast_p],
                                 "observed_frequency": [_finite(x) for x in observed_f],
                                 "samples": [int(x) for x in diag["sample_size"]],
                                 "bin_edges": [float(x) for x in diag["bin_edges"]]})
                curve = self.roc[j][g]
                with np.errstate(invalid="ignore", divide="ignore"):
                    pofd, pod, area = probscores.ROC_curve_compute(curve, compute_area=True)
                roc[key].append({"pofd": [_finite(x) for x in pofd], "pod": [_finite(x) for x in pod],
                                 "prob_thresholds": [float(x) for x in curve["prob_thrs"]],
                                 "area": _finite(area)})
                sq, events, n = self.brier[j, g]
                bs = sq / n if n else math.nan
                base = events / n if n else math.nan
                clim = base * (1 - base)
                brier[key].append({"bs": _finite(bs), "base_rate": _finite(base),
                                   "bss": _finite(1 - bs / clim) if n and clim > 0 else None})
        out["reliability"], out["roc"], out["brier"] = rel, roc, brier
        var, se, n = self.spread.T
        consistent = math.sqrt((m + 1) / m)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread, rmse = np.sqrt(var / n), np.sqrt(se / n)
            ratio = spread * consistent / rmse
            ratio_all = math.sqrt(var.sum() / se.sum()) * consistent if se.sum() > 0 else math.nan
        out["spread_skill"] = {"spread": [_finite(x) for x in spread], "rmse": [_finite(x) for x in rmse],
                               "ratio": [_finite(x) for x in ratio], "ratio_all_leads": _finite(ratio_all)}
        return out


def flatness(counts: np.ndarray) -> dict[str, float | None]:
    """Reliability index and share outside the ensemble of rank-histogram ``counts`` (M + 1,)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if not n:
        return {"reliability_index": None, "outside": None, "outside_expected": 2 / len(counts)}
    freq = counts / n
    return {"reliability_index": float(np.abs(freq - 1 / len(counts)).sum()),
            "outside": float(freq[0] + freq[-1]), "outside_expected": 2 / len(counts)}
