"""At which spatial scales STEPS's ensemble beats the diffusion model's: CRPS of block means.

    .venv/bin/python benchmarks/diag_crps_scales.py SPLIT STRIDE [CHECKPOINT] \
        | tee benchmarks/results/crps-scales-SPLIT.txt

For every ``STRIDE``-th window of SPLIT (256x256 centre crop, 8 members, cached motion): CRPS of
extrapolation, STEPS, the diffusion model with its card's post-processing and the untrained network
with the same post-processing, each computed on block means of 1x1 (2 km), 4x4 (8 km) and 16x16 (32 km)
pixels, over all lead times and at +5/+30/+60 min, then at 2 km for every lead time. Where the
diffusion rows trail STEPS only at 2 km, the missing spread is fine-scale detail; where they trail at
32 km too, it is position / amount. The untrained network needs ``outputs/untrained-diffusion.pt``
(``python benchmarks/export_untrained_diffusion.py``). About 20 s per window on the 2-core CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from scoring_windows import bind_radar_mix, scoring_windows
from tqdm import tqdm

from nowcast.evaluation.crps import crps_ensemble
from nowcast.models import load_forecaster
from nowcast.types import FUTURE, MASK, MOTION, PAST

MEMBERS, SCALES, LEADS = 8, (1, 4, 16), (0, 5, 11)
PP = {"sampler": "ddim", "steps": 4, "match": "observation", "motion_perturbation": 0.5}


def blocks(x: torch.Tensor, s: int) -> torch.Tensor:
    """Block means of the last two axes (any leading axes)."""
    if s == 1:
        return x
    lead = x.shape[:-2]
    return F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), s).reshape(*lead, *(n // s for n in x.shape[-2:]))


def main() -> None:
    torch.set_num_threads(2)
    split, stride = sys.argv[1], int(sys.argv[2])
    checkpoint = sys.argv[3] if len(sys.argv) > 3 else None
    ds = scoring_windows(split)
    models = {
        "extrapolation": load_forecaster("extrapolation"),
        "steps": load_forecaster("steps"),
        "diffusion-pp": load_forecaster("diffusion", checkpoint, **PP),
        "untrained-pp": load_forecaster("diffusion", "outputs/untrained-diffusion.pt", **PP),
    }
    bind_radar_mix(*models.values())
    scores = {name: {s: [] for s in SCALES} for name in models}
    for i in tqdm(range(0, len(ds), stride), desc=f"{split} windows", file=sys.stderr):
        w = ds[i]
        past, fut, mask, motion = w[PAST][None], w[FUTURE][None, :12], w[MASK][None], w[MOTION][None]
        for name, model in models.items():
            ens = model.forecast(past, 12, MEMBERS if name != "extrapolation" else 1,
                                 torch.Generator().manual_seed(i), motion=motion)
            ens = ens.expand(-1, MEMBERS, -1, -1, -1)
            for s in SCALES:
                covered = blocks(mask.float(), s) > 0.999
                c = crps_ensemble(blocks(ens, s), blocks(torch.where(mask[:, None], fut, 0.0), s))
                per_lead = [float(c[0, k][covered[0]].mean()) for k in range(12)]
                scores[name][s].append(per_lead)
    print(f"{split}: {len(scores['steps'][1])} windows, CRPS mm/h (x extrapolation)")
    for s in SCALES:
        ref = np.nanmean(np.array(scores["extrapolation"][s]), axis=0)
        print(f"-- blocks of {s}x{s} px ({2 * s} km): all leads | +5 | +30 | +60 min")
        for name in models:
            v = np.nanmean(np.array(scores[name][s]), axis=0)
            cells = " | ".join(f"{v[k]:.4f} ({v[k] / ref[k]:.2f})" for k in LEADS)
            print(f"{name:15s} {v.mean():.4f} ({v.mean() / ref.mean():.2f}) | {cells}")
    print("-- 2 km, every lead time, x extrapolation")
    ref = np.nanmean(np.array(scores["extrapolation"][1]), axis=0)
    for name in models:
        v = np.nanmean(np.array(scores[name][1]), axis=0)
        print(f"{name:15s} " + " ".join(f"{x:.2f}" for x in v / ref))


if __name__ == "__main__":
    main()
