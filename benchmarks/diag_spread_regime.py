"""Does what the past frames show predict how much motion spread a forecast wants?

    .venv/bin/python benchmarks/diag_spread_regime.py

On validation the card's motion perturbation (0.5 of STEPS' size) and STEPS' own size (1.0) tie on
CRPS, and on the unseen convective event of configs/evaluate/holdout-mch.yaml the larger size
gains 9 %. For every window of both reports' untrained-network rows (the perturbed extrapolation,
nothing learned), this prints what the larger perturbation gains there (relative CRPS change over
all leads, > 0: the larger is better) beside two things known at forecast time from the past frames
alone: the one-step error of the extrapolation itself (the last past frame against the one before
it advected one step along the window's motion, mean absolute error over the rain's mean, mm/h)
and the fraction of covered pixels at or above 4 mm/h in the last frame; then their rank
correlations, per event and over all windows. Reads the reports' per-window scores; run after
both evaluations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from scoring_windows import scoring_windows

from nowcast.evaluation.findings import window_pooled
from nowcast.evaluation.results import read_result
from nowcast.models.advection import advect
from nowcast.types import MASK, MOTION, PAST, repo_root

#: (data config:split, window stride, report folder, row at 0.5, row at 1.0); the training split's
#: report is not committed (it only feeds this table): `nowcast evaluate --data
#: configs/data/radar-mix.yaml --split train --stride 2 --perceptual false --n-cases 0 --threads 2
#: --output runs/spread-train --models SMALL LARGE` with SMALL = UNTRAINED + ",motion_perturbation=0.5,
#: label=untrained-pp", LARGE = UNTRAINED + ",motion_perturbation=1.0,label=untrained-pp-perturbation-1"
#: and UNTRAINED = "diffusion:sampler=ddim,steps=1,match=observation,"
#: "checkpoint=outputs/untrained-diffusion.pt" (one string)
CASES = [
    ("configs/data/radar-mix.yaml:val", 1, "reports/radar-mix-val-generator",
     "untrained-network-same-post-processing", "untrained-network-perturbation-1"),
    ("configs/data/radar-mix-holdout-mch.yaml:val", 1, "reports/holdout-mch",
     "untrained-pp", "untrained-pp-perturbation-1"),
    ("configs/data/radar-mix.yaml:train", 2, "runs/spread-train",
     "untrained-pp", "untrained-pp-perturbation-1"),
]


def window_crps(report: Path, row: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-window CRPS (mm/h, mean over covered pixels and leads) and the windows' dataset indices,
    from the row's per-window sums as the report's bootstrap reads them."""
    windows, pooled = window_pooled(read_result(report / "models" / row / "result.json"), ("crps",))
    total, count = pooled.numerator.sum(axis=1), pooled.denominator.sum(axis=1)
    return total / np.maximum(count, 1), np.asarray(windows)


def past_signals(item: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(one-step relative extrapolation error, fraction >= 4 mm/h) of one window's past frames."""
    past, covered, motion = item[PAST].float(), item[MASK], item[MOTION].float()
    predicted = advect(past[-2][None], motion[None], 1)[0, 0]
    observed = past[-1]
    scored = covered & (predicted.isfinite()) & ((observed > 0) | (predicted > 0))
    mean_rain = observed[covered].mean().clamp(min=1e-3)
    error = (predicted - observed).abs()[scored].sum() / covered.sum().clamp(min=1) / mean_rain
    heavy = (observed[covered] >= 4.0).float().mean()
    return float(error), float(heavy)


def main() -> None:
    rows = []
    for where, stride, report, small, large in CASES:
        if not (repo_root() / report / "models" / large).is_dir():
            print(f"# {report} has no row {large}: {where} left out (see CASES)")
            continue
        data, split = where.split(":")
        windows = scoring_windows(split, data, stride)
        crps_small, indices = window_crps(repo_root() / report, small)
        crps_large, indices_large = window_crps(repo_root() / report, large)
        assert (indices == indices_large).all()
        for i, c_small, c_large in zip(indices, crps_small, crps_large, strict=True):
            item = windows[int(i)]
            error, heavy = past_signals(item)
            window = windows.windows[int(i)]
            event = f"{Path(str(window.store)).stem} {str(window.anchor)[:10]}"
            rows.append((event, (c_small - c_large) / max(c_small, 1e-9), error, heavy))
    events = sorted({r[0] for r in rows})
    print("event | windows | gain of size 1.0 (mean, relative CRPS) | one-step error | fraction >= 4 mm/h"
          " | rank correlation of the gain with the error, with the fraction")
    for ev in events:
        gain, err, heavy = (np.array([r[k] for r in rows if r[0] == ev]) for k in (1, 2, 3))
        print(f"{ev} | {len(gain)} | {gain.mean():+.3f} | {err.mean():.3f} | {heavy.mean():.4f}"
              f" | {spearmanr(err, gain).statistic:+.2f}, {spearmanr(heavy, gain).statistic:+.2f}")
    gain, err, heavy = (np.array([r[k] for r in rows]) for k in (1, 2, 3))
    print(f"all {len(rows)} windows | rank correlation of the gain with the error "
          f"{spearmanr(err, gain).statistic:+.2f}, with the fraction {spearmanr(heavy, gain).statistic:+.2f}")


if __name__ == "__main__":
    main()
