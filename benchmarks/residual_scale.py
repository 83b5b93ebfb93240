"""The diffusion recipe's ``residual_scale``: the standard deviation of the diffused residual.

    .venv/bin/python benchmarks/residual_scale.py [--coarsen 4 1] [--crops 600]

The residual ``future - extrapolation`` in the recipe's model space (configs/train/diffusion.yaml),
on its diffusion grid (block means over ``coarsen`` pixels), over the covered cells of random
rainy 256 px crops of the radar-mix training windows, drawn as training draws them
(:class:`nowcast.training.prepared.PreparedResiduals`). Prints one line per grid and writes
``benchmarks/results/residual-scale.json``. Needs the training stores and motion caches
(``nowcast ingest``, ``nowcast motion --splits train``).
"""

from __future__ import annotations

import argparse
import json

import torch
import yaml

from nowcast.data.datamodule import from_config
from nowcast.models.diffusion.wrapper import RESIDUAL
from nowcast.training.diffusion_task import DiffusionTask
from nowcast.training.prepared import PreparedResiduals
from nowcast.types import MASK, repo_root


def residual_std(coarsen: int, crops: int, seed: int = 0) -> float:
    """Standard deviation (model-space units) of the residual on the ``coarsen`` x coarser grid."""
    recipe = yaml.safe_load((repo_root() / "configs/train/diffusion.yaml").read_text())["model"]["init_args"]
    recipe["model"]["args"]["coarsen"] = coarsen
    diffusion = DiffusionTask(**recipe).diffusion
    dm = from_config(repo_root() / "configs/data/radar-mix.yaml", crop_size=256, with_motion=True,
                     cached_motion_only=True, in_memory=True)
    dm.setup("fit")
    prepared = PreparedResiduals.from_datamodule(dm, diffusion)
    torch.manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64)  # count, sum, sum of squares
    for _ in range(crops):
        item = prepared[int(torch.randint(len(prepared), (1,)))]
        values = item[RESIDUAL][item[MASK][None].expand_as(item[RESIDUAL])].double()
        sums += torch.stack([values.new_tensor(values.numel()), values.sum(), values.square().sum()])
    n, total, total_sq = sums.tolist()
    return (total_sq / n - (total / n) ** 2) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coarsen", type=int, nargs="+", default=[4, 1])
    parser.add_argument("--crops", type=int, default=600)
    args = parser.parse_args()
    results = {}
    for k in args.coarsen:
        results[str(k)] = residual_std(k, args.crops)
        print(f"coarsen {k} ({2 * k} km grid): residual std {results[str(k)]:.4f} over {args.crops} crops")
    out = repo_root() / "benchmarks/results/residual-scale.json"
    out.write_text(json.dumps({"crops": args.crops, "std_by_coarsen": results}, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
