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
:class:`nowcast.evaluation.runner.EvaluatedModel`). Each model's result is written when it finishes;
a failing model is reported with its error and the others go on; ``--resume`` skips models
whose results are already in the output folder.

Exit codes: 0 every model scored; 2 refused before anything ran (bad option, data config,
split, store, model name or argument: one line on stderr, no output folder written) or a model
refused as not fitting the data (e.g. trained at another time step; the others are scored);
1 a model failed while running (its error is in the report).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

from nowcast.cli import EXIT_REFUSED, command_parser, fail
from nowcast.types import repo_root

#: exit code of a run in which a model failed while running (the report holds its error)
EXIT_MODEL_FAILED = 1

HELP = "score forecasters on a store split and write a report (tables, plots, metrics.json, CSV)"

log = logging.getLogger("nowcast.evaluate")


class EvaluateInputError(ValueError):
    """Inconsistent options or an output folder that holds another run."""


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
                   help="keep models whose results are already in --output")
    s.add_argument("--report-only", action=ActionYesNo, default=False,
                   help="only rebuild the report from the results in --output")
    s.add_argument("--progress", action=ActionYesNo, default=True, help="progress bars")
    return p


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=20)
        return res.stdout.strip() if res.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "modified_tracked_files": len(status.splitlines()) if status else 0}


def build_data(args: Any) -> tuple[Any, dict[str, Any]]:
    """The split's dataset (fixed centred crop) and a description: stores, events, window count."""
    from nowcast.data.datamodule import NowcastDataModule, load_config, store_range_config
    from nowcast.models.base import refuse_unknown_arguments

    overrides: dict[str, Any] = {k: v for k, v in (("n_in", args.n_in), ("n_out", args.n_out),
                                                   ("stride", args.stride)) if v is not None}
    if args.crop is not None:
        overrides["eval_crop_size"] = args.crop or None
    if args.store:
        cfg: dict[str, Any] = {**store_range_config(args.store, args.start, args.end, "evaluate"),
                               "eval_crop_size": 256}
        where = f"store {Path(args.store).resolve()} {args.start or 'start'} .. {args.end or 'end'}"
        split = "evaluate"
    else:
        if args.start or args.end:
            raise EvaluateInputError("--start/--end select frames of --store; with --data use --split")
        if not args.data:
            raise EvaluateInputError("give --data (a data config) or --store")
        cfg, split = load_config(args.data), args.split
        where = f"split {split!r} of {args.data}"
    cached = args.motion == "cache"
    source = f"data config {args.data}" if not args.store else f"--store {args.store}"
    try:
        refuse_unknown_arguments(NowcastDataModule, cfg, what=source, noun="key")
    except ValueError as err:
        raise EvaluateInputError(str(err)) from err
    try:
        dm = NowcastDataModule(**{**cfg, **overrides, "num_workers": 0, "with_motion": cached,
                                  "cached_motion_only": False})
    except (ValueError, KeyError) as err:  # overlapping splits, unknown stores, bad times
        raise EvaluateInputError(f"{source}: {err.args[0] if isinstance(err, KeyError) else err}") from err
    if split not in dm.events:
        raise EvaluateInputError(f"split {split!r} not in the data config; it has {sorted(dm.events)}")
    dm.setup("test")
    if not len(dm.datasets.get(split, ())):
        have = {k: len(v) for k, v in dm.datasets.items()}
        raise EvaluateInputError(
            f"{where} has no windows of {dm.n_in} + {dm.n_out} frames every {dm.stride} step(s) "
            f"(windows per split: {have}); check its times against the stores' frames, "
            "or lower --n-in/--n-out")
    dataset = dm.dataset(split)
    missing = dm.without_cached_motion(dataset.windows) if cached else []
    if missing:
        raise EvaluateInputError(
            f"--motion cache: {len(missing)} of {len(dataset)} windows ({where}) have no cached motion, "
            f"e.g. {missing[0].store} {missing[0].anchor}; build it with `nowcast motion` "
            f"(--data ... --splits {split}, or --store ... --start ... --end ...)")
    return dataset, {"where": where, "split": split, "motion": args.motion,
                     "events": [str(e) for e in dm.events[split]],
                     "store_paths": {k: str(v) for k, v in dm.store_paths.items()},
                     "n_in": dm.n_in, "n_out": dm.n_out, "crop": dm.eval_crop_size,
                     "stores_used": sorted({w.store for w in dataset.windows})}


def describe_stores(paths: dict[str, str]) -> dict[str, Any]:
    import numpy as np

    from nowcast.data.store import describe_store, open_store
    from nowcast.schema import RainValueError, timestep

    out = {}
    for name, path in paths.items():
        try:
            ds = open_store(path, check_values=True)
        except RainValueError as err:  # a wrong conversion is not scored: one line, exit 2
            raise EvaluateInputError(str(err)) from err
        out[name] = {"path": path, **describe_store(ds)}
        if out[name]["timestep_minutes"] is None:  # a store without the attribute: its frames' step
            out[name]["timestep_minutes"] = timestep(ds) / np.timedelta64(1, "m")
        ds.close()
    return out


def check_one_grid(stores: dict[str, dict[str, Any]]) -> None:
    """Refuse stores of different time steps or pixel sizes in one run: scores per lead time, the
    spectra and the models' binding (:func:`nowcast.models.base.bind_to_store`) assume one of each."""
    def differ(key: str) -> bool:
        values = [float(s[key]) for s in stores.values()]
        return any(abs(v - values[0]) > 0.01 * abs(values[0]) for v in values)

    if differ("timestep_minutes") or differ("pixel_size_m"):
        each = "; ".join(f"{name} {s['timestep_minutes']:g} min, {s['pixel_size_m']:g} m"
                         for name, s in stores.items())
        raise EvaluateInputError(f"the stores of this run differ in time step or pixel size ({each}); "
                                 "evaluate each kind in its own run")


def merge_runs(old: dict[str, Any], new: dict[str, Any], out: Path) -> dict[str, Any]:
    """The run metadata of ``--resume`` into a folder that holds ``old``: the same windows, lead
    times and motion are required; the model list is the old one with this run's models
    replacing or joining it (so a report can be finished on another machine, e.g. the diffusion
    samplers on a GPU after the baselines on a CPU), and each invocation is kept in ``parts``."""
    from nowcast.evaluation.runner import EvaluatedModel

    same = {"windows": old.get("window_indices") == new["window_indices"],
            "lead times": old.get("n_out") == new["n_out"],
            "motion": old.get("data", {}).get("motion", "estimate") == new["data"]["motion"]}
    differ = [k for k, ok in same.items() if not ok]
    if differ:
        raise EvaluateInputError(f"{out} holds results for other {', '.join(differ)}; "
                                 "use another --output or drop --resume")
    models = {EvaluatedModel.parse(m).label: m for m in old.get("models", [])}
    models.update({EvaluatedModel.parse(m).label: m for m in new["models"]})
    keys = ("command", "device_name", "git", "started", "wall_s")
    parts = old.get("parts") or [{k: old.get(k) for k in keys}]
    return {**new, "models": list(models.values()), "parts": [*parts, *new["parts"]]}


def check_models(texts: list[Any]) -> list[Any]:
    """The model specs of ``--models``, each refused (one line) before anything runs if its text,
    name or arguments are bad, or its checkpoint is missing, unreadable or another model's."""
    from nowcast.evaluation.runner import parse_specs

    if not texts:
        raise EvaluateInputError("no models given (--models)")
    try:
        specs = parse_specs(texts)
        for spec in specs:
            spec.check()
    except ValueError as err:
        raise EvaluateInputError(f"--models: {err}") from err
    return specs


def run(args: Any, argv: list[str]) -> dict[str, dict[str, Any]]:
    """Score the models and write the report; returns each model's result by label."""
    import torch

    from nowcast.evaluation.report import write_report
    from nowcast.evaluation.runner import EvaluationRunner, device_name, evenly_spaced, write_json

    out = Path(args.output)
    if args.report_only:
        if not (out / "run.json").exists():
            raise EvaluateInputError(f"--report-only: no run.json in {out}")
        write_report(out, focus=args.focus)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    specs = check_models(args.models)
    t0 = time.perf_counter()
    dataset, data = build_data(args)
    data["stores"] = describe_stores({k: data["store_paths"][k] for k in data["stores_used"]})
    check_one_grid(data["stores"])
    first = next(iter(data["stores"].values()))
    positions = evenly_spaced(len(dataset), args.max_windows)
    n_out = data["n_out"]
    meta: dict[str, Any] = {
        "name": args.name or out.name, "command": "nowcast evaluate " + shlex.join(argv),
        "config": args.as_dict() if hasattr(args, "as_dict") else vars(args),
        "git": _git(), "device": device, "device_name": device_name(torch.device(device)),
        "torch": torch.__version__, "n_in": data["n_in"], "n_out": n_out, "crop": data["crop"],
        "timestep_minutes": first.get("timestep_minutes"), "members": args.members, "point": args.point,
        "n_windows": len(positions), "n_windows_available": len(dataset), "window_indices": positions,
        "windows_note": (f"evenly spaced subset of {len(positions)} of {len(dataset)}"
                         if len(positions) < len(dataset) else "all windows of the split"),
        "windows": [f"{dataset.windows[i].store} {dataset.windows[i].anchor}" for i in positions],
        "data": data, "models": [s.to_dict() for s in specs], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    part = {key: meta[key] for key in ("command", "device_name", "git", "started")}
    meta["parts"] = [part]
    run_json = out / "run.json"
    if args.resume and run_json.exists():
        import json

        meta = merge_runs(json.loads(run_json.read_text()), meta, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(run_json, meta)
    suite_kwargs = {"perceptual": {"auto": "auto", "true": True, "false": False}[args.perceptual],
                    "weights_dir": args.weights_dir, "point": args.point,
                    "pixel_size_km": float(first.get("pixel_size_m") or 2000.0) / 1000.0}
    runner = EvaluationRunner(dataset, positions, out, n_out, members=args.members,
                              batch_size=args.batch_size, num_workers=args.num_workers, device=device,
                              seed=args.seed,
                              suite_kwargs=suite_kwargs, n_cases=args.n_cases, progress=args.progress,
                              stores=list(data["stores"].values()), n_in=data["n_in"],
                              shape=(data["crop"], data["crop"]) if data["crop"] else None)
    log.info("%d windows (%s), %d model(s) -> %s", len(positions), data["where"], len(specs), out)
    runner.prepare()

    def partial(result: dict[str, Any]) -> None:
        error = f" ({result['error']})" if result.get("error") else ""
        log.info("%s: %s%s", result["label"], result["status"], error)
        part["wall_s"] = time.perf_counter() - t0  # so far: an interrupted run keeps its time
        meta["wall_s"] = sum(p.get("wall_s") or 0.0 for p in meta["parts"])
        write_json(run_json, meta)
        write_report(out, focus=args.focus, figures=False)  # tables so far; figures at the end

    results = runner.run(specs, resume=args.resume, on_result=partial)
    part["wall_s"] = time.perf_counter() - t0
    meta["wall_s"] = sum(p.get("wall_s") or 0.0 for p in meta["parts"])
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(run_json, meta)
    write_report(out, focus=args.focus)
    n_ok = sum(r["status"] == "ok" for r in results.values())
    log.info("report in %s (%d/%d models ok, %.0f s)", out / "report.html", n_ok, len(results),
             meta["wall_s"])
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.getLogger("nowcast").setLevel(logging.INFO)
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
