"""Where an ensemble's frequency bias comes from, on every ``stride``-th validation window.

    .venv/bin/python benchmarks/diag_ensemble_bias.py CHECKPOINT STRIDE SAMPLER[:STEPS[:SCALE[:ETA]]],...
    e.g. benchmarks/diag_ensemble_bias.py nowcast/checkpoints/diffusion.pt 4 ddim:4

For extrapolation and each diffusion sampler (8 members, cached motion): CSI and frequency bias at
1 mm/h of the ensemble mean (all leads and +5 min), of the probability-matched mean and of member 0,
and CRPS; then the same after probability-matching every member to the extrapolation at each lead
time ("+cdf"), which separates "too dry" from "rain in the wrong place", and to the last past frame
("+obs", what the shipped settings' ``match: observation`` does). SCALE multiplies the sampled
residual (0.5 halves it). Prints a table; the model card quotes it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scoring_windows import scoring_windows

from nowcast.evaluation.crps import crps_ensemble
from nowcast.evaluation.inputs import reduce_ensemble
from nowcast.models import load_forecaster
from nowcast.models.diffusion.forecaster import RAW_SAMPLES
from nowcast.types import FUTURE, MASK, MOTION, PAST

MEMBERS = 8


def match_to(ens: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each member (1, M, T, H, W) given the values of ``ref`` (1, 1, T, H, W) in its own rank order
    inside ``mask`` (ties among dry pixels broken by ``ref``)."""
    out = ens.clone()
    for j in range(ens.shape[1]):
        for k in range(ens.shape[2]):
            v, r = ens[0, j, k][mask], ref[0, 0, k][mask]
            order = torch.argsort(v + 1e-4 * r)
            vals = torch.empty_like(v)
            vals[order] = torch.sort(r).values
            out[0, j, k][mask] = vals
    return out


def main() -> None:
    torch.set_num_threads(2)
    ckpt, stride, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    ds = scoring_windows("val")
    stats: dict[tuple[str, str], np.ndarray | list[float]] = {}

    def score(name: str, ens: torch.Tensor, fut: torch.Tensor, mask: torch.Tensor) -> None:
        m = mask[:, None].expand_as(fut)
        for red in ["mean"] if ens.shape[1] == 1 else ["mean", "pm_mean", "member0"]:
            fc, ob = (reduce_ensemble(ens, red) >= 1) & m, (fut >= 1) & m
            for key, f, o in ((red, fc, ob), (f"{red}+5", fc[:, 0], ob[:, 0])):
                st = stats.setdefault((name, key), np.zeros(3))
                st += [float((f & o).sum()), float((~f & o).sum()), float((f & ~o).sum())]
        crps = crps_ensemble(ens, fut)[m].mean()
        stats.setdefault((name, "crps"), []).append(float(crps))

    models = {}
    for v in variants:
        parts = v.split(":")
        name, steps, scale, eta = parts + ["10", "1", "0"][len(parts) - 1:]
        f = load_forecaster("diffusion", ckpt, sampler=name, steps=int(steps), **RAW_SAMPLES,
                            sampler_args={"eta": float(eta)} if name == "ddim" else None)
        f.diffusion.residual_scale *= float(scale)
        models[v] = f
    extrapolation = load_forecaster("extrapolation")
    t0 = time.time()
    for i in range(0, len(ds), stride):
        w = ds[i]
        past, fut, mask, mot = w[PAST][None], w[FUTURE][None, :12], w[MASK][None], w[MOTION][None]
        ex = extrapolation.forecast(past, 12, members=1, motion=mot)
        score("extrapolation", ex, fut, mask)
        for v, f in models.items():
            seed = torch.Generator().manual_seed(i)
            ens = f.forecast(past, 12, members=MEMBERS, generator=seed, motion=mot)
            score(v, ens, fut, mask)
            score(v + "+cdf", match_to(ens, ex, mask[0]), fut, mask)
            last = past[:, -1:, None].expand(1, 1, 12, *past.shape[-2:])
            score(v + "+obs", match_to(ens, last, mask[0]), fut, mask)
    print(f"{len(range(0, len(ds), stride))} windows, {time.time() - t0:.0f} s")
    for (name, key), st in stats.items():
        if key == "crps":
            print(f"{name:22s} CRPS {np.mean(st):.4f}")
        else:
            h, mi, fa = st
            print(f"{name:22s} {key:10s} CSI@1 {h / (h + mi + fa):.3f}  bias {(h + fa) / (h + mi):.2f}")


if __name__ == "__main__":
    main()
