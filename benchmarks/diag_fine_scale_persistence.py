"""How long each event's fine scales last: a per-window cue that needs no forecast and no score.

    .venv/bin/python benchmarks/diag_fine_scale_persistence.py SPLIT STRIDE

For every ``STRIDE``-th window of SPLIT (256x256 centre crop, cached motion) the past frames are
aligned along the motion to the last one's time (``ConditionalDiffusion.aligned_past``), taken to
model space log10(1 + R), and split at 32 km (16 px block means, bilinearly back: the scales the
residual-use diagnostic splits at). The cue is the correlation, over covered pixels, of the
scales below 32 km of the last frame with those of each earlier frame, i.e. the Lagrangian
autocorrelation of the fine scales at lags of 5, 10 and 15 minutes (STEPS estimates the same kind
of number per cascade level to decide how fast a scale turns into noise). Printed per event: the
mean and range over its windows, and the fraction of covered pixels at 1 mm/h or more in the last
frame. Seconds on the 2-core CPU.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np
import torch
from diag_residual_use import large_scales
from scoring_windows import scoring_windows

from nowcast.models.diffusion import ConditionalDiffusion
from nowcast.types import MASK, MOTION, PAST

BLOCK_PX = 16  # 32 km at 2 km


def fine_scales(x: torch.Tensor) -> torch.Tensor:
    """``x`` (C, H, W) minus its 16 px block means, bilinearly back on its grid."""
    return x - large_scales(x[None], BLOCK_PX)[0]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()).clamp_min(1e-12))


def main() -> None:
    torch.set_num_threads(2)
    split, stride = sys.argv[1], int(sys.argv[2])
    ds = scoring_windows(split)
    cues: dict[str, list[list[float]]] = defaultdict(list)
    wet: dict[str, list[float]] = defaultdict(list)
    for i in range(0, len(ds), stride):
        w = ds[i]
        event = f"{w['store']} {np.datetime_as_string(ds.windows[i].anchor, unit='D')}"
        aligned = ConditionalDiffusion.aligned_past(w[PAST][None], w[MOTION][None])[0]
        fine = fine_scales(torch.log10(1.0 + aligned))
        cover = w[MASK]
        n = fine.shape[0]
        cues[event].append([correlation(fine[-1][cover], fine[n - 1 - lag][cover]) for lag in (1, 2, 3)])
        wet[event].append(float((w[PAST][-1][cover] >= 1.0).float().mean()))
    print(f"{split}: every {stride} window(s); Lagrangian autocorrelation of the scales below 32 km "
          f"(log10(1 + R)), mean [min, max] over the event's windows")
    for event, values in cues.items():
        v = np.array(values)
        lags = "  ".join(f"{5 * (k + 1)} min {v[:, k].mean():.2f} [{v[:, k].min():.2f}, {v[:, k].max():.2f}]"
                         for k in range(3))
        print(f"{event:18s} {len(v):3d} windows | {lags} | wet fraction {np.mean(wet[event]):.2f}")


if __name__ == "__main__":
    main()
