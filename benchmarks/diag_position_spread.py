"""How much CRPS an ensemble gains from spread in *where* the rain goes, on every 4th validation window.

    .venv/bin/python benchmarks/diag_position_spread.py [CHECKPOINT]

Each member of the diffusion model's raw 8-member DDIM-4 ensemble, and 8 copies of the
extrapolation, is shifted as a whole by a random integer displacement per lead time (standard
deviation ``rate * lead / 30 min`` pixels in x and y, edges wrapped): rate 0 = as forecast. Prints the
CRPS of each against the extrapolation's MAE (its CRPS). The model card quotes it as the reason for
the motion perturbations of ``nowcast.models.perturbation``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from scoring_windows import scoring_windows

from nowcast.evaluation.crps import crps_ensemble
from nowcast.models import load_forecaster
from nowcast.models.diffusion.forecaster import RAW_SAMPLES
from nowcast.types import FUTURE, MASK, MOTION, PAST

MEMBERS, STRIDE, RATES = 8, 4, (0.0, 0.5, 1.0, 2.0)


def shifted(ens: torch.Tensor, rate: float, g: torch.Generator) -> torch.Tensor:
    """(1, M, T, H, W) with member j at lead k rolled by N(0, (rate (k + 1) / 6)^2) pixels per axis."""
    out = ens.clone()
    for j in range(ens.shape[1]):
        for k in range(ens.shape[2]):
            dy, dx = (torch.randn(2, generator=g) * rate * (k + 1) / 6).round().int().tolist()
            out[0, j, k] = torch.roll(ens[0, j, k], shifts=(dy, dx), dims=(0, 1))
    return out


def main() -> None:
    torch.set_num_threads(2)
    ds = scoring_windows("val")
    model = load_forecaster("diffusion", sys.argv[1] if len(sys.argv) > 1 else None, sampler="ddim", steps=4,
                            **RAW_SAMPLES)
    extrapolation = load_forecaster("extrapolation")
    crps = {(name, r): [] for name in ("diffusion", "extrapolation") for r in RATES}
    mae = []
    for i in range(0, len(ds), STRIDE):
        w = ds[i]
        past, fut, mask, motion = w[PAST][None], w[FUTURE][None, :12], w[MASK][None], w[MOTION][None]
        covered = mask[:, None].expand_as(fut)
        single = extrapolation.forecast(past, 12, 1, motion=motion)
        ensembles = {
            "diffusion": model.forecast(past, 12, MEMBERS, torch.Generator().manual_seed(i), motion=motion),
            "extrapolation": single.expand(-1, MEMBERS, -1, -1, -1),
        }
        mae.append(float((ensembles["extrapolation"][:, 0] - fut).abs()[covered].mean()))
        g = torch.Generator().manual_seed(100 + i)
        for r in RATES:
            for name, ens in ensembles.items():
                crps[(name, r)].append(float(crps_ensemble(shifted(ens, r, g), fut)[covered].mean()))
    ref = np.mean(mae)
    print(f"{len(mae)} windows; extrapolation MAE {ref:.4f} mm/h")
    for (name, r), values in crps.items():
        mean = np.mean(values)
        print(f"{name:14s} shift rate {r:3.1f} px per 30 min: CRPS {mean:.4f} ({mean / ref:.3f}x)")


if __name__ == "__main__":
    main()
