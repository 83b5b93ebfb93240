"""What the learned residual adds, on which base and at which weight per lead time (paired draws).

    .venv/bin/python benchmarks/diag_residual_use.py SPLIT STRIDE [CHECKPOINT]

For every ``STRIDE``-th window of SPLIT (256x256 centre crop, 8 members, cached motion) the
diffusion model's coarse residual is sampled once (DDIM-4) and each member's BPS motion
perturbation (x 0.5, the card's) drawn once; every row below reuses those same draws, so the rows
differ only in how the residual is used:

- ``extrapolation``, ``steps``: the references (STEPS' own members and perturbations);
- ``pp, residual x w``: the card's forecast (residual added to the extrapolation in model space,
  member displaced, matched to the last frame's rain distribution) with the residual weighted by
  ``w`` per lead time: 1 = the shipped model, 0 = the untrained network (the extrapolation),
  ``exp(-lead / tau)`` = trust the residual at the first lead times only;
- ``pp, residual above / below 32 km``: the same with only the residual's 32 km block means
  (bilinearly back on its 8 km grid) or only what is left of it (the residual minus those): which
  scales of the correction carry over to other events (the card's CRPS by scale: the residual helps
  every scale at +5 min and costs on 32 km blocks at +30 min);
- ``pp, residual x 0..2 across members``: the members weighted 0, 2/7, ..., 2 (mean 1), i.e. the
  residual's amplitude, right for some events and not for others, spread over the ensemble;
- ``pp above 32 km + steps below, matched``: each shipped member's scales above 32 km with a
  STEPS member's below (the spread STEPS' cascade gives the scales it finds unpredictable);
- ``steps (+ residual), matched``: STEPS' members, with and without the residual added in model
  space, matched the same way (does the residual add skill to a base that already has spread?).

Scores: CRPS (mm/h) at 2 km over covered pixels, and CSI / frequency bias at 1 mm/h of the
probability-matched mean (contingency pooled over windows per lead time, mean over lead times).
About 15 s per window on the 2-core CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from scoring_windows import RADAR_MIX_GRID, RADAR_MIX_WINDOW, bind_radar_mix, scoring_windows
from tqdm import tqdm

from nowcast.evaluation.crps import crps_ensemble
from nowcast.evaluation.inputs import probability_matched_mean
from nowcast.models import load_forecaster
from nowcast.models.advection import advect
from nowcast.models.matching import match_to_observation
from nowcast.models.perturbation import bps_displacements, displace
from nowcast.types import FUTURE, MASK, MOTION, PAST

MEMBERS, N_OUT, THRESHOLD, PERTURBATION = 8, 12, 1.0, 0.5
PIXEL_KM, STEP_MIN = RADAR_MIX_GRID.pixel_size_m / 1000.0, RADAR_MIX_WINDOW.timestep_minutes
TAUS_MIN = (15.0, 30.0)  # e-folding lead times of the residual's weight
BLOCK_CELLS = 4  # 4 cells of the 8 km diffusion grid: 32 km blocks
SHIPPED = "pp, residual x 1 (shipped)"


def seeded(seed: int) -> torch.Generator:
    """One seed per window, the same for every row."""
    return torch.Generator().manual_seed(seed)


def on_base(model, residual: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """``bases`` (1, M, T, H, W) mm/h plus the diffused ``residual`` (M, T, h, w), model space -> mm/h."""
    diff = model.diffusion
    x = diff.from_diffused(residual, diff.to_model(bases[0]))
    return diff.to_rain(x.clamp(-1.0, 1.0))[None]


def weighted(weight: torch.Tensor):
    """The residual (M, T, h, w) times ``weight`` (T,) per lead time."""
    return lambda residual: residual * weight[None, :, None, None]


def weighted_members(weight: torch.Tensor):
    """The residual (M, T, h, w) times ``weight`` (M,) per member."""
    return lambda residual: residual * weight[:, None, None, None]


def scale_blend(model, large: torch.Tensor, small: torch.Tensor, cells: int = 16) -> torch.Tensor:
    """Members (1, M, T, H, W) mm/h with the scales above ``cells`` pixels (32 km at 2 km) of
    ``large`` and those below of ``small``, blended in model space (:func:`large_scales`)."""
    diff = model.diffusion
    a, b = diff.to_model(large[0]), diff.to_model(small[0])
    x = large_scales(a, cells) + b - large_scales(b, cells)
    return diff.to_rain(x.clamp(-1.0, 1.0))[None]


def large_scales(residual: torch.Tensor, cells: int = BLOCK_CELLS) -> torch.Tensor:
    """The residual's means over ``cells`` x ``cells`` blocks of its grid, bilinearly back on it."""
    coarse = torch.nn.functional.avg_pool2d(residual, cells)
    size = residual.shape[-2:]
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def main() -> None:
    torch.set_num_threads(2)
    split, stride = sys.argv[1], int(sys.argv[2])
    checkpoint = sys.argv[3] if len(sys.argv) > 3 else None
    ds = scoring_windows(split)
    extrapolation, steps = load_forecaster("extrapolation"), load_forecaster("steps")
    model = load_forecaster("diffusion", checkpoint, sampler="ddim", steps=4, match="none",
                            motion_perturbation=0.0)
    bind_radar_mix(extrapolation, steps, model)
    leads = 5.0 * torch.arange(1, N_OUT + 1)
    uses = {"pp, residual x 0 (untrained)": lambda r: r * 0.0, SHIPPED: lambda r: r}
    uses.update({f"pp, residual x exp(-lead/{tau:.0f} min)": weighted(torch.exp(-leads / tau))
                 for tau in TAUS_MIN})
    uses["pp, residual above 32 km"] = large_scales
    uses["pp, residual below 32 km"] = lambda r: r - large_scales(r)
    # the residual's amplitude as an ensemble dimension: members weighted 0, 2/7, ..., 2 (mean 1)
    uses["pp, residual x 0..2 across members"] = weighted_members(torch.linspace(0.0, 2.0, MEMBERS))
    rows = ["extrapolation", "steps", *uses, "steps, matched", "steps + residual, matched",
            "pp above 32 km + steps below, matched"]
    crps = {r: [] for r in rows}
    table = {r: np.zeros((N_OUT, 3)) for r in rows}  # hits, misses, false alarms per lead
    for i in tqdm(range(0, len(ds), stride), desc=f"{split} windows", file=sys.stderr):
        w = ds[i]
        past, fut, mask, motion = w[PAST][None], w[FUTURE][None, :N_OUT], w[MASK][None], w[MOTION][None]
        g = seeded(i)
        with torch.no_grad():
            ext = extrapolation.forecast(past, N_OUT, 1, seeded(i), motion=motion)
            ste = steps.forecast(past, N_OUT, MEMBERS, seeded(i), motion=motion)
            residual, _ = model.diffusion.sample_diffused(past, MEMBERS, model.sampler_impl, model.steps, g,
                                                          motion)
            shift = PERTURBATION * bps_displacements(motion, MEMBERS, N_OUT, PIXEL_KM, STEP_MIN, g)
            tie = advect(past[:, -1].float(), motion, N_OUT)
            members = ext.expand(-1, MEMBERS, -1, -1, -1)
            ens = {"extrapolation": members, "steps": ste}
            displaced = {r: displace(on_base(model, use(residual), members), shift)
                         for r, use in uses.items()}
            for r, moved in displaced.items():
                ens[r] = match_to_observation(moved, past[:, -1], tie_break=tie)
            ens["steps, matched"] = match_to_observation(ste, past[:, -1], tie_break=tie)
            ens["pp above 32 km + steps below, matched"] = match_to_observation(
                scale_blend(model, displaced[SHIPPED], ste), past[:, -1], tie_break=tie)
            ens["steps + residual, matched"] = match_to_observation(
                on_base(model, residual, ste), past[:, -1], tie_break=tie)
        obs = torch.where(mask[:, None], fut, 0.0)
        cover = mask[0]
        for r, e in ens.items():
            e = torch.where(mask[:, None, None], e, 0.0)
            c = crps_ensemble(e, obs)
            crps[r].append([float(c[0, k][cover].mean()) for k in range(N_OUT)])
            point = probability_matched_mean(e)[0]
            for k in range(N_OUT):
                f, o = point[k][cover] >= THRESHOLD, obs[0, k][cover] >= THRESHOLD
                table[r][k] += [float((f & o).sum()), float((~f & o).sum()), float((f & ~o).sum())]
    n = len(crps["steps"])
    print(f"{split}: {n} windows (every {stride}), {MEMBERS} members; CRPS mm/h at 2 km (x extrapolation), "
          f"probability-matched mean's CSI and bias at {THRESHOLD:g} mm/h")
    ref = np.nanmean(np.array(crps["extrapolation"]), axis=0)
    for r in rows:
        v = np.nanmean(np.array(crps[r]), axis=0)
        h, mi, fa = table[r].T
        csi, bias = h / np.maximum(h + mi + fa, 1), (h + fa) / np.maximum(h + mi, 1)
        print(f"{r:38s} CRPS {v.mean():.4f} ({v.mean() / ref.mean():.3f}) +5 {v[0]:.4f} +30 {v[5]:.4f} "
              f"+60 {v[-1]:.4f} | CSI {csi.mean():.3f} +5 {csi[0]:.3f} | bias {bias.mean():.2f}")


if __name__ == "__main__":
    main()
