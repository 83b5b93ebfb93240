"""``nowcast evaluate``: score several forecasters on the same windows and write a report folder.

    nowcast evaluate --config configs/evaluate/radar-mix-test.yaml [--max-windows 3] [--resume]
    nowcast evaluate --data configs/data/radar-mix.yaml --split test \\
        --models persistence extrapolation steps:members=8 "diffusion:sampler=ddim,steps=50" \\
        --output reports/radar-mix-test
    nowcast evaluate --store stores/x.zarr --start 2021-02-02T20:00 --end 2021-02-02T23:00 --crop 256 ...

Windows come from a data config's split (:class:`nowcast.data.datamodule.NowcastDataModule`,
its fixed centred ``eval_crop_size`` scoring window) or from any store made by ``nowcast
ingest`` with a time range. Models are model specs, ``name[:key=value,...]`` or a mapping, as in
``nowcast forecast`` and ``nowcast operate`` (:mod:`nowcast.models.spec`; the evaluation's own keys:
:class:`nowcast.evaluation.specs.EvaluatedModel`). Each model's result is written when it finishes;
a failing model is reported with its error and the others go on; ``--resume`` skips models
whose results are already in the output folder, and adds or replaces the others, only when the
run scores the same windows and data with the same crop, lead times, motion, members, point
forecast and seed (anything else is refused, the folder left as it was); ``--overwrite`` replaces
an earlier run's results; a folder holding them is refused without one of the two.

Exit codes: 0 every model scored; 2 refused before anything ran (bad option, data config,
split, store, model name or argument, an earlier run's folder without --resume or --overwrite,
or --resume into a folder of another run: one line on
stderr, no output folder written or changed) or a model refused as not fitting the data (e.g.
trained at another time step; the others are scored); 1 a model failed while running (its
error is in the report).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

from nowcast.cli import EXIT_REFUSED, command_parser, fail

#: exit code of a run in which a model failed while running (the report holds its error)
EXIT_MODEL_FAILED = 1

HELP = "score forecasters on a store split and write a report (tables, plots, metrics.json, CSV)"


def build_parser() -> ArgumentParser:
    p = command_parser("nowcast evaluate", description=__doc__)
    p.add_argument("--config", action=ActionConfigFile, help="YAML of options (e.g. configs/evaluate/*.yaml)")
    d = p.add_argument_group("Data: a data config and split, or one store and a time range")
    d.add_argument("--data", type=str | None, default="configs/data/radar-mix.yaml",
                   help="data config (NowcastDataModule init args) giving stores and splits")
    d.add_argument("--split", type=str, default="test", help="split of the data config to score")
    d.add_argument("--store", type=str | None, default=None,
                   help="instead of --data: any rain store written by `nowcast ingest` (zarr or netCDF)")
    d.add_argument("--start", type=str | None, default=None, help="with --store: first frame time (ISO, UTC)")
    d.add_argument("--end", type=str | None, default=None, help="with --store: last frame time (ISO, UTC)")
    d.add_argument("--n-in", type=int | None, default=None,
                   help="past frames (default: the data config's, or 4)")
    d.add_argument("--n-out", type=int | None, default=None,
                   help="lead times (default: the data config's, or 12)")
    d.add_argument("--crop", type=int | None, default=None,
                   help="side of the centred scoring window in px (default: the config's eval_crop_size, "
                        "or 256); 0 = the full field")
    d.add_argument("--stride", type=int | None, default=None, help="frames between window starts (default 1)")
    d.add_argument("--max-windows", type=int | None, default=None,
                   help="score an evenly spaced subset of this many windows (default: all)")
    m = p.add_argument_group("Models")
    m.add_argument("--models", type=str | dict[str, Any], default=["persistence", "extrapolation"], nargs="+",
                   help="model specs, 'name[:key=value,...]' or {name, args, checkpoint, ...} "
                        "(nowcast.models.spec); keys checkpoint, members, max_windows, label, panels are "
                        "the evaluation's, the rest go to the model (e.g. diffusion:sampler=ddim,steps=50)")
    m.add_argument("--members", type=int, default=8, help="ensemble members (deterministic models give 1)")
    m.add_argument("--seed", type=int, default=0, help="seed of every model's generator")
    m.add_argument("--batch-size", type=int, default=4, help="windows per forecast call")
    m.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
    m.add_argument("--device", type=str, default="cpu", help="torch device (cpu, cuda, cuda:1, auto)")
    m.add_argument("--motion", type=Literal["estimate", "cache"], default="estimate",
                   help="motion of the models that advect: 'estimate' (each model runs pysteps on the "
                        "scoring window) or 'cache' (the stores' motion caches, see `nowcast motion`: "
                        "one full-field motion shared by every model; needs no pysteps, e.g. on a GPU)")
    m.add_argument("--threads", type=int | None, default=None, help="torch CPU threads (default: torch's)")
    s = p.add_argument_group("Scores and report")
    s.add_argument("--perceptual", type=Literal["auto", "true", "false"], default="auto",
                   help="LPIPS/FID: auto = when the offline weights are there (else marked skipped)")
    s.add_argument("--weights-dir", type=str | None, default=None, help="LPIPS/FID weights folder")
    s.add_argument("--point", type=Literal["mean", "pm_mean", "member0"], default="mean",
                   help="field of an ensemble for MSE/PSNR/SSIM/CSI/FSS")
    s.add_argument("--n-cases", type=int, default=2, help="sample cases drawn in the report")
    s.add_argument("--focus", type=str, default="diffusion",
                   help="registry name whose lead or lack of it the findings spell out")
    s.add_argument("--output", type=str, default="reports/evaluation", help="report folder")
    s.add_argument("--name", type=str | None, default=None, help="report title (default: the folder name)")
    s.add_argument("--resume", action=ActionYesNo, default=False,
                   help="keep models whose results are already in --output (a run of the same windows, data "
                        "and settings only)")
    s.add_argument("--overwrite", action=ActionYesNo, default=False,
                   help="replace the results of an earlier run in --output (without it, or --resume, such "
                        "a folder is refused)")
    s.add_argument("--report-only", action=ActionYesNo, default=False,
                   help="only rebuild the report from the results in --output")
    s.add_argument("--progress", action=ActionYesNo, default=True, help="progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.getLogger("nowcast").setLevel(logging.INFO)
    from nowcast.evaluation.data import EvaluateInputError
    from nowcast.evaluation.job import run
    from nowcast.schema import StoreError

    try:
        results = run(args, argv)
    except (EvaluateInputError, FileNotFoundError, KeyError, StoreError) as err:
        return fail("evaluate", err)
    code = 0
    for label, result in results.items():  # the report has them too; the exit code and stderr say so
        if result["status"] != "ok":
            verb, exit_code = (("refused", EXIT_REFUSED) if result["status"] == "refused"
                               else ("failed", EXIT_MODEL_FAILED))
            code = max(code, fail("evaluate", f"model {label} {verb}: {result['error']}", exit_code))
    return code
