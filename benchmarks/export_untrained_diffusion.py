"""Export the diffusion recipe's network untrained, for the ablation row of the test report.

    .venv/bin/python benchmarks/export_untrained_diffusion.py [OUT]  (default outputs/untrained-diffusion.pt)

The recipe (configs/train/diffusion.yaml) zero-initialises the network's output, so this file
forecasts the extrapolation itself; scored with the shipped model's member post-processing
(probability matching, motion perturbations) it shows what the post-processing does without
anything learned, and so what the trained residual adds (configs/evaluate/radar-mix-test.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from nowcast.training.diffusion_task import DiffusionTask
from nowcast.types import repo_root


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else repo_root() / "outputs" / "untrained-diffusion.pt")
    recipe = yaml.safe_load((repo_root() / "configs/train/diffusion.yaml").read_text())["model"]["init_args"]
    torch.manual_seed(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    DiffusionTask(**recipe).export(out)
    print(out)


if __name__ == "__main__":
    main()
