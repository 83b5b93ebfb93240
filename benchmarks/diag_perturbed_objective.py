"""The perturbed scoring rule on held-out windows, for a generator's exports along its training.

    .venv/bin/python benchmarks/diag_perturbed_objective.py SPLIT DRAWS BASE [GENERATOR ...] [--space issued]

The objective that ``configs/train/perturbed-scoring-rule.yaml`` minimises (fair CRPS in mm/h on
the diffusion grid of 4 one-step samples, each displaced by its own BPS motion error x 0.5), on
every window of SPLIT (256x256 centre crops, cached motion), averaged over DRAWS draws per window
whose latents and motion errors are the same for every generator (paired): first for the
untrained generator (the one-step x0 of the diffusion model BASE), then for each GENERATOR file
trained on BASE. The fair CRPS's expectation does not depend on the number of samples; 4 are
drawn here whatever the training drew. SPLIT "train" scores the training windows the same way:
a fit that lowers the objective there but not on "val" does not generalise to unseen events.
SPLIT may name another data config, DATA.yaml:SPLIT (default configs/data/radar-mix.yaml).
``--space issued`` scores the same samples at the full resolution, as
``configs/train/issued-scoring-rule.yaml`` trains (default "rain": on the diffusion grid).
"""

from __future__ import annotations

import argparse

import torch
from scoring_windows import RADAR_MIX_DATA, scoring_windows
from tqdm import tqdm

from nowcast.models.spec import ModelSpec
from nowcast.training.adversarial_task import AdversarialTask

SETTINGS = {"objective": "crps", "crps_space": "rain", "crps_members": 4, "motion_perturbation": 0.5,
            "noise_maps": 4}


def objective(task: AdversarialTask, windows, draws: int) -> float:
    """Mean objective over windows and draws; draw ``d`` of window ``i`` seeded ``1000 i + d``."""
    task.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(len(windows)):
            item = {k: v[None] for k, v in windows[i].items() if isinstance(v, torch.Tensor)}
            for d in range(draws):
                torch.manual_seed(1000 * i + d)
                total += float(task.training_loss(item))
    return total / (len(windows) * draws)


def main() -> None:
    torch.set_num_threads(2)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split")
    parser.add_argument("draws", type=int)
    parser.add_argument("base")
    parser.add_argument("generators", nargs="*")
    parser.add_argument("--space", choices=("rain", "issued"), default="rain")
    args = parser.parse_args()
    split, draws, base, files = args.split, args.draws, args.base, args.generators
    data, _, split = split.rpartition(":")
    windows = scoring_windows(split, data or RADAR_MIX_DATA)
    spec = ModelSpec("diffusion", {"sampler": "adversarial", "steps": 1}, base)
    rows = [(f"untrained (the one-step x0 of {base})", None), *((f, f) for f in files)]
    for label, path in tqdm(rows, desc="generators"):
        task = AdversarialTask(spec, **{**SETTINGS, "crps_space": args.space})
        if path is not None:
            task.load_init_weights(path)
        print(f"{label}: {objective(task, windows, draws):.5f}", flush=True)


if __name__ == "__main__":
    main()
