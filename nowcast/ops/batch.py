"""The batch nowcast job behind ``nowcast forecast``: inputs, issue times, outputs, the forecast loop.

Reads the ``n_in`` frames up to each issue time from a rain store (or from raw radar files
ingested on the fly), runs one forecaster (chosen by registry name, never by type) and writes one
CF forecast file per issue time, plus optional PNG/GIF quicklooks. The issue time is the valid
time of the latest input frame; lead times are 1..n_out store time steps after it. Without a
store or input folder the embedded default event is used: MeteoSwiss 2016-07-11 (summer
convection, ingested at 2 km into a cache) when ``../shared/radar`` is present, else the
package's synthetic event. The operational job (:mod:`nowcast.ops.cycle`) shares the input
helpers of :mod:`nowcast.ops.inputs`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nowcast.ops.inputs import (
    ForecastInputError,
    frames_without_data,
    input_times,
    missing_inputs,
    parse_crop,
    parse_time,
    store_description,
)
from nowcast.types import issue_seed, radar_dir

if TYPE_CHECKING:
    import xarray as xr

    from nowcast.models import Forecaster

log = logging.getLogger("nowcast.forecast")

#: the real event used as embedded default when ../shared/radar is present (relative to it)
DEFAULT_REAL_EVENT = "pysteps/mch/20160711"
#: 1 km MeteoSwiss pixels -> the benchmark's 2 km grid
DEFAULT_REAL_COARSEN = 2


def cache_dir(path: str | None = None) -> Path:
    return Path(path or os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast")


def ingest_into(folder: Path, store: Path, coarsen: int) -> Path:
    from data_pipelines.ingest import ingest_folder, skipped_lines
    from nowcast.fsutil import LockedError
    from nowcast.schema import StoreError

    log.info("ingesting %s into %s (coarsen %d)", folder, store, coarsen)
    try:
        report = ingest_folder(folder, store, source=None, coarsen=coarsen)
    except LockedError as exc:  # another run is filling the same cache store: one line, exit 2
        raise StoreError(str(exc)) from exc
    # a skipped file is a missing input frame later on: say why here, where the reason is known
    for line in [*(f"warning: {w}" for w in report.warnings), *skipped_lines(report.skipped)]:
        log.warning("%s", line.strip())
    return store


def holds_every_file(store: Path, folder: Path) -> bool:
    """True if ``store`` exists and holds as many frames as ``folder`` has radar files."""
    from data_pipelines.sources import find_files
    from data_pipelines.store import is_zarr_store, stored_index

    if not is_zarr_store(store):
        return False
    try:
        times, ds = stored_index(store)
        ds.close()
    except Exception:  # an unreadable cache is ingested again (the ingest repairs or refuses it)
        return False
    return len(times) == len(find_files(folder))


def default_store(cache: Path) -> Path:
    """The embedded default event: a real rainy event when ../shared/radar exists, else synthetic."""
    real = radar_dir() / DEFAULT_REAL_EVENT
    if real.is_dir():
        store = cache / f"default-{DEFAULT_REAL_EVENT.replace('/', '-')}-2km.zarr"
        log.info("embedded default: real event %s", real)
        if not holds_every_file(store, real):  # ingest is idempotent, but listing 40 duplicates is noise
            ingest_into(real, store, DEFAULT_REAL_COARSEN)
        return store
    from nowcast.data.synthetic import write_synthetic_store

    store = cache / "default-synthetic-seed0.zarr"
    log.info("embedded default: synthetic event (%s not found)", real)
    if not store.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".synthetic-"))
        write_synthetic_store(tmp / "store.zarr", n_frames=24, height=128, width=128, seed=0)
        os.replace(tmp / "store.zarr", store)
        tmp.rmdir()
    return store


#: options that count something (ensemble members, lead times, issue times per call, steps between
#: issue times, pixels averaged on ingest): refused below 1
COUNT_OPTIONS = ("members", "n_out", "batch_size", "every", "coarsen")


def check_options(args: Any) -> None:
    """Refuse option values the run would only fail on later (after an ingest or a model load), as
    :class:`ForecastInputError` naming the option: a count of :data:`COUNT_OPTIONS` below 1, a seed
    a torch generator cannot take, a device this machine cannot run on, --resume with --overwrite."""
    from nowcast.models.base import usable_device
    from nowcast.types import check_counts, check_seed

    if args.resume and args.overwrite:
        raise ForecastInputError("--resume keeps the finished forecasts, --overwrite replaces them: give one")

    try:
        check_counts("", **{f"--{name.replace('_', '-')}": getattr(args, name) for name in COUNT_OPTIONS})
        check_seed(args.seed)
    except ValueError as err:
        raise ForecastInputError(str(err)) from err
    try:
        usable_device(args.device)
    except ValueError as err:
        raise ForecastInputError(f"--device: {err}") from err


def select_issue_times(
    store_times: np.ndarray, step: np.timedelta64, n_in: int, issue_time: str,
    start: str | None, end: str | None, every: int,
) -> tuple[list[np.datetime64], bool]:
    """Issue times to run and whether this is a batch (``--start``/``--end`` given); ``every`` >= 1."""
    times = store_times.astype("datetime64[s]")
    if len(times) == 0:
        raise ForecastInputError("the store holds no frames")
    if start is None and end is None:
        issue = times[-1] if issue_time == "latest" else parse_time(issue_time)
        return [issue], False
    t0 = times[0] + step * (n_in - 1) if start in (None, "first") else parse_time(start)
    t1 = times[-1] if end in (None, "latest") else parse_time(end)
    if t1 < t0:
        raise ForecastInputError(f"--end {t1}Z is before --start {t0}Z")
    n = int((t1 - t0) // step) + 1
    if end is not None:  # anchored at the end: `--end latest --every 3` includes the latest frame
        return sorted(t1 - step * i for i in range(0, n, every)), True
    return [t0 + step * i for i in range(0, n, every)], True


# ----------------------------------------------------------------------------- outputs


def is_file_output(output: str) -> bool:
    """True if ``--output`` names one forecast file (.nc/.zarr), False if a folder."""
    from nowcast.io.cf import FORMATS

    return Path(output).suffix.lower() in FORMATS


def output_paths(
    output: str, fmt: str, model: str, issues: Sequence[np.datetime64], batch: bool
) -> list[Path]:
    from nowcast.io.cf import forecast_filename

    out = Path(output)
    if is_file_output(output):
        if batch or len(issues) != 1:
            raise ForecastInputError(f"--output {output} is a file; a batch of issue times needs a folder")
        return [out]
    return [out / forecast_filename(model, t, f".{fmt}") for t in issues]


def output_files(path: Path, kinds: Sequence[str]) -> list[Path]:
    """The files an issue time writes: its forecast ``path`` and the quicklooks of ``kinds`` beside it."""
    return [path, *(path.with_suffix(f".{k}") for k in kinds)]


def unfinished(issues: Sequence[np.datetime64], paths: Sequence[Path], kinds: Sequence[str], model: str,
               members: int, n_out: int) -> tuple[list[np.datetime64], list[Path]]:
    """``--resume``: the issue times (and their paths) whose forecast file or a quicklook is missing.
    Every finished one must come from this model with these ``members`` (1 for a deterministic
    model) and lead times (read from the file), else :class:`~nowcast.io.cf.ForecastExistsError`:
    a batch is not continued with other settings. (A stochastic model's members are seeded by the
    issue time: the rest are the draws an uninterrupted run would have made.)"""
    import xarray as xr

    from nowcast.io.cf import ForecastExistsError

    todo_issues, todo_paths, done = [], [], 0
    for issue, path in zip(issues, paths, strict=True):
        theirs = None
        if all(q.exists() for q in output_files(path, kinds)):
            try:
                with xr.open_dataset(path, engine="zarr" if path.suffix == ".zarr" else "netcdf4") as ds:
                    theirs = (ds.attrs.get("model"), ds.sizes.get("member"), ds.sizes.get("lead_time"))
            except (OSError, ValueError) as err:  # damaged since: forecast again
                log.warning("--resume: %s cannot be read (%s); forecast again", path, err)
        if theirs is None:
            todo_issues.append(issue)
            todo_paths.append(path)
            continue
        if theirs != (model, members, n_out):
            raise ForecastExistsError(f"--resume: {path} was made by {theirs[0]} with {theirs[1]} member(s) "
                                      f"and {theirs[2]} lead times, this run asks for {model} with {members} "
                                      f"and {n_out}; give another --output, or --overwrite")
        done += 1
    if done:
        log.info("--resume: %d issue time(s) already written in full, skipped; %d to forecast", done,
                 len(todo_issues))
    return todo_issues, todo_paths


def refuse_output_over_input(output: Path, source: Path, what: str, replaced: bool) -> None:
    """Refuse to write forecasts over their own input ``source`` (``what`` names it: "rain store",
    "raw folder"): an ``output`` that is ``source`` or lies inside it, or, when ``replaced`` (a
    forecast file or quicklook, which ``--overwrite`` replaces whole), one that contains it. A folder
    of forecasts may contain the input: the files written into it are checked one by one. Resolved
    paths are compared, so a link or ``..`` to the input is refused too."""
    out, src = output.resolve(), source.resolve()
    if out == src:
        relation = "is"
    elif src in out.parents:
        relation = "lies inside"
    elif replaced and out in src.parents:
        relation = "contains"
    else:
        return
    raise ForecastInputError(f"cannot write {output}: it {relation} the input {what} {source}, which the "
                             "forecast would destroy; choose another --output")


@dataclass
class Job:
    """One resolved forecast run (everything the loop needs)."""

    store_path: Path
    ds: xr.Dataset
    rows: slice
    cols: slice
    step: np.timedelta64
    forecaster: Forecaster
    checkpoint: str | None
    #: what the store was made from, for provenance (the store itself, a raw folder, the default)
    origin: str


def run_batch(job: Job, issues: Sequence[np.datetime64], paths: Sequence[Path], n_out: int,
              members: int, seed: int, batch_size: int, quicklooks: Sequence[str], field: str,
              overwrite: bool) -> list[Path]:
    """Forecast every issue time (in groups of ``batch_size``) and write its file and quicklooks."""
    import torch
    from tqdm.auto import tqdm

    from nowcast.io.cf import Provenance, forecast_dataset, write_forecast
    from nowcast.io.quicklook import write_quicklooks
    from nowcast.schema import RAIN, SOURCE_FILE

    f = job.forecaster
    generator = torch.Generator(device=f.device)
    # a stochastic model forecasts one issue time per call, from a generator seeded by the issue
    # time (issue_seed): its members do not depend on the batch, the range or a --resume
    group_size = batch_size if f.deterministic else 1
    written = []
    # a bar on a terminal for a batch; the log says what each group wrote either way
    bar = tqdm(total=len(issues), desc=f"{f.name} forecasts", unit="issue time",
               disable=None if len(issues) > 1 else True)
    for i in range(0, len(issues), group_size):
        group, group_paths = issues[i:i + group_size], paths[i:i + group_size]
        generator.manual_seed(issue_seed(seed, group[0]))
        needed = [input_times(t, f.n_in, job.step) for t in group]
        frames = np.stack([
            job.ds[RAIN].sel(time=t.astype("datetime64[ns]")).isel(y=job.rows, x=job.cols).values
            for t in needed
        ]).astype(np.float32)  # (B, n_in, H, W), NaN = no coverage
        t0 = time.perf_counter()
        rain = f.forecast(torch.from_numpy(frames).to(f.device), n_out, members, generator).cpu().numpy()
        seconds = time.perf_counter() - t0
        log.info("%s: %d issue time(s) forecast in %.2f s (%.2f s each, %dx%d px, %d member(s), %d leads)",
                 f.name, len(group), seconds, seconds / len(group), frames.shape[-2], frames.shape[-1],
                 rain.shape[1], n_out)
        grid = job.ds.isel(y=job.rows, x=job.cols)
        for b, (issue, path) in enumerate(zip(group, group_paths, strict=True)):
            files = (job.ds[SOURCE_FILE].sel(time=needed[b].astype("datetime64[ns]")).values.tolist()
                     if SOURCE_FILE in job.ds else [])
            prov = Provenance(forecaster=f.describe(), input_store=str(job.store_path),
                              input_times=needed[b], input_files=files, checkpoint=job.checkpoint,
                              extra={"input_origin": job.origin,
                                     "forecast_seconds": round(seconds / len(group), 3)})
            coverage = np.isfinite(frames[b]).all(axis=0)
            out = forecast_dataset(rain[b], issue, job.step, grid, prov, coverage)
            write_forecast(out, path, overwrite=overwrite)
            last = np.where(coverage, frames[b, -1], np.nan)
            images = write_quicklooks(out, path, quicklooks, last_observed=last, field=field)
            log.info("wrote %s%s (inputs %s .. %s)", path, "".join(f" + {q.name}" for q in images),
                     f"{needed[b][0]}Z", f"{needed[b][-1]}Z")
            written.append(path)
        bar.update(len(group))
    bar.close()
    return written


def run(args: Any) -> list[Path]:
    """Resolve inputs and outputs, then forecast; returns the forecast files written."""
    from nowcast.data.store import open_store
    from nowcast.io.cf import ForecastExistsError, check_output_folder
    from nowcast.io.quicklook import QUICKLOOK_KINDS, field_member
    from nowcast.models.base import bind_to_store
    from nowcast.models.spec import ModelSpec
    from nowcast.schema import timestep

    t_start = time.perf_counter()
    if args.store and args.input_dir:
        raise ForecastInputError("give --store or --input-dir, not both")
    check_options(args)
    # refusals that need neither data nor model come first: an ingest or a forecast takes minutes
    source = Path(args.store or args.input_dir) if args.store or args.input_dir else None
    what = "rain store" if args.store else "raw folder" if args.input_dir else "default store"
    if source is not None:
        refuse_output_over_input(Path(args.output), source, what, replaced=is_file_output(args.output))
    check_output_folder(Path(args.output).parent if is_file_output(args.output) else Path(args.output))
    spec = ModelSpec.parse(args.model)
    model = spec.check()
    kinds = QUICKLOOK_KINDS[args.quicklook]
    if kinds:  # a quicklook that cannot be drawn would fail after its forecast file is written
        try:
            field_member(args.quicklook_field, 1 if model.deterministic else args.members)
        except ValueError as err:
            raise ForecastInputError(f"--quicklook-field: {err}") from err
    with tempfile.TemporaryDirectory(prefix="nowcast-ingest-") as tmp:
        if args.store:
            store_path, origin = Path(args.store), "store"
        elif args.input_dir:
            folder = Path(args.input_dir)
            if not folder.is_dir():
                raise ForecastInputError(f"--input-dir {folder} is not a folder")
            store_path = ingest_into(folder, Path(tmp) / "store.zarr", args.coarsen)
            origin = f"raw files in {folder.resolve()} ingested on the fly (coarsen {args.coarsen})"
        else:
            store_path = default_store(cache_dir(args.cache_dir))
            origin = "embedded default event"
        ds = open_store(store_path)
        step = timestep(ds)
        rows, cols = parse_crop(args.crop, ds.sizes["y"], ds.sizes["x"])
        forecaster = spec.load().to(args.device)
        bind_to_store(forecaster, store_description(ds, store_path, step), args.n_out,
                      shape=(rows.stop - rows.start, cols.stop - cols.start))
        n_in = forecaster.n_in
        issues, batch = select_issue_times(ds.time.values, step, n_in, args.issue_time,
                                           args.start, args.end, args.every)
        store_times = ds.time.values
        gaps = {t: missing_inputs(store_times, t, n_in, step) for t in issues}
        stored = {x for t in issues if not gaps[t] for x in input_times(t, n_in, step).tolist()}
        empty = frames_without_data(ds, stored, rows, cols)
        blank = {t: [f"{np.datetime64(x, 's')}Z" for x in input_times(t, n_in, step).tolist() if x in empty]
                 for t in issues if not gaps[t]}
        where = "the --crop window" if args.crop else "the store"
        if not batch and gaps[issues[0]]:
            raise ForecastInputError(
                f"cannot issue at {issues[0]}Z with {forecaster.name} (needs {n_in} frames every "
                f"{step / np.timedelta64(1, 'm'):g} min): missing input frames "
                f"{', '.join(gaps[issues[0]])} in {store_path}")
        if not batch and blank[issues[0]]:
            raise ForecastInputError(
                f"cannot issue at {issues[0]}Z with {forecaster.name}: input frame(s) "
                f"{', '.join(blank[issues[0]])} hold no radar data in {where} (all NaN), so the whole "
                "forecast would be NaN; choose another --issue-time or re-ingest those frames")
        for t in issues:
            if gaps[t]:
                log.warning("skipping issue time %sZ: missing input frames %s", t, ", ".join(gaps[t]))
            elif blank[t]:
                log.warning("skipping issue time %sZ: input frame(s) %s hold no radar data in %s (all NaN)",
                            t, ", ".join(blank[t]), where)
        issues = [t for t in issues if not gaps[t] and not blank[t]]
        if not issues:
            raise ForecastInputError(f"no issue time in the range has its {n_in} input frames "
                                     f"with radar data in {store_path}")
        paths = output_paths(args.output, args.format, forecaster.name, issues, batch)
        targets = [q for p in paths for q in output_files(p, kinds)]
        for target in targets:  # a store named like a forecast file in the --output folder
            refuse_output_over_input(target, source or store_path, what, replaced=True)
        if args.resume:
            members = 1 if forecaster.deterministic else args.members
            issues, paths = unfinished(issues, paths, kinds, forecaster.name, members, args.n_out)
        existing = [q for p in paths for q in output_files(p, kinds) if q.exists()]
        if existing and not (args.overwrite or args.resume):
            raise ForecastExistsError(f"{len(existing)} output file(s) exist, e.g. {existing[0]}; "
                                      "use --overwrite to replace them (or --resume to continue a batch)")
        if not issues:
            ds.close()
            log.info("done: every issue time's forecast is already in %s (--resume)", args.output)
            return []
        log.info("store %s (%d frames, step %g min, grid %dx%d, crop %s); model %s; "
                 "%d issue time(s) %sZ .. %sZ", store_path, ds.sizes["time"], step / np.timedelta64(1, "m"),
                 ds.sizes["y"], ds.sizes["x"], args.crop or "none", forecaster.name, len(issues),
                 issues[0], issues[-1])
        job = Job(store_path, ds, rows, cols, step, forecaster, spec.checkpoint, origin)
        # (--resume: a file left by an issue time that did not finish, e.g. a forecast without its
        # quicklook, belongs to no finished forecast and is replaced)
        written = run_batch(job, issues, paths, args.n_out, args.members, args.seed, args.batch_size,
                            kinds, args.quicklook_field, args.overwrite or args.resume)
        ds.close()
    log.info("done: %d forecast file(s) in %.1f s", len(written), time.perf_counter() - t_start)
    return written
