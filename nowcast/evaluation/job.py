"""The evaluation job behind ``nowcast evaluate``: check the models, build the windows, score, report.

:func:`run` takes the command's parsed options; it writes the run metadata (``run.json``: the
command, the data, the models, git state and device, and each ``--resume`` part), lets the
:class:`~nowcast.evaluation.runner.EvaluationRunner` score each model, and rebuilds the report
after each model and at the end. Bad options, data or models raise
:class:`~nowcast.evaluation.data.EvaluateInputError` before anything is written.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from nowcast.evaluation.cases import evenly_spaced
from nowcast.evaluation.data import EvaluateInputError, build_data, check_one_grid, describe_stores
from nowcast.evaluation.provenance import device_name, git_state
from nowcast.evaluation.results import merge_runs, write_json
from nowcast.evaluation.specs import EvaluatedModel, parse_specs
from nowcast.fsutil import remove_path

log = logging.getLogger("nowcast.evaluate")

#: what a run writes into its output folder (``--overwrite`` removes these names, nothing else)
RUN_FILES = ("run.json", "models", "cases.npz", "figures", "metrics.json", "metrics.csv", "spectra.csv",
             "speed.csv", "report.md", "report.html")


def claim_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for this run, or refuse (:class:`EvaluateInputError`) before anything runs.

    A folder holding an earlier run's results is continued (``resume``: :func:`merge_runs` then
    checks that it scored the same thing) or replaced (``overwrite``: its results are removed first),
    never scored into as it is: the earlier results would stay beside the new ``run.json`` and a later
    ``--resume`` would take them for results of this run's data and settings.
    """
    if resume and overwrite:
        raise EvaluateInputError("--resume keeps the results in --output, --overwrite removes them: give one")
    earlier = [name for name in ("run.json", "models") if (out / name).exists()]
    if not earlier or resume:
        return
    if not overwrite:
        raise EvaluateInputError(f"{out} holds the results of an earlier run; add --resume to continue it "
                                 "(same windows, data and settings), --overwrite to replace them, or give "
                                 "another --output")
    for name in RUN_FILES:
        remove_path(out / name)
    log.info("removed the earlier run's results in %s (--overwrite)", out)


def check_models(texts: list[Any]) -> list[EvaluatedModel]:
    """The model specs of ``--models``, each refused (one line) before anything runs if its text,
    name or arguments are bad, or its checkpoint is missing, unreadable or another model's."""
    if not texts:
        raise EvaluateInputError("no models given (--models)")
    try:
        specs = parse_specs(texts)
        for spec in specs:
            spec.check()
    except ValueError as err:
        raise EvaluateInputError(f"--models: {err}") from err
    return specs


def check_options(args: Any, device: str) -> None:
    """Refuse, before anything runs, options the scoring would only fail on later: fewer than one
    member, window per batch or thread, a negative worker or case count, a seed a torch generator
    cannot take, a device this machine cannot run on (:class:`EvaluateInputError`, one line)."""
    from nowcast.models.base import usable_device
    from nowcast.types import check_counts, check_seed

    try:
        check_counts("", **{"--members": args.members, "--batch-size": args.batch_size,
                            "--threads": args.threads})
        check_counts("", minimum=0, **{"--num-workers": args.num_workers, "--n-cases": args.n_cases})
        check_seed(args.seed)
        usable_device(device)
    except ValueError as err:
        raise EvaluateInputError(str(err)) from err


def run(args: Any, argv: list[str]) -> dict[str, dict[str, Any]]:
    """Score the models and write the report; returns each model's result by label."""
    import torch

    from nowcast.evaluation.report import write_report
    from nowcast.evaluation.runner import EvaluationRunner

    out = Path(args.output)
    if args.report_only:
        if not (out / "run.json").exists():
            raise EvaluateInputError(f"--report-only: no run.json in {out}")
        write_report(out, focus=args.focus)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    check_options(args, device)
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
        "git": git_state(), "device": device, "device_name": device_name(torch.device(device)),
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
    claim_output(out, args.resume, args.overwrite)
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
