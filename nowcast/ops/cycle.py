"""One operational nowcast cycle: ingest new scans, forecast with a fallback chain, write, tidy up.

The cycle is a thin layer over what the batch commands use: ``data_pipelines.ingest`` (the
transactional store append and its writer lock), the :class:`~nowcast.models.base.Forecaster`
contract (``bind`` to the store, ``forecast``) and the CF writer (atomic, fsynced). What it adds:

- one cycle at a time (``<state>/cycle.lock``; a second one is refused at once, a lock left by a
  killed cycle is taken over);
- incoming files that stopped changing ``settle_seconds`` ago are ingested; a file that cannot be
  read, is from another network or grid, or holds impossible values is moved to the quarantine
  folder with its reason, never retried; ingested files move to the processed folder;
- the scan the cycle is due for may be late: the cycle waits up to ``grace_seconds`` for it, then
  skips with the reason logged;
- the fallback chain: a model that cannot be loaded, lacks an input frame, fails, would overrun
  the latency budget (judged from its last run) or does overrun it hands over to the next; the
  last model of the chain runs without a deadline (a late forecast beats none); the forecast
  file names the model that made it and the ones passed over (``fallback_from``);
- one JSON line per cycle, a status file, retention (:mod:`nowcast.ops.state`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from nowcast.data.store import damaged_store_message, undecodable_chunk
from nowcast.fsutil import WriteError, WriterLock, fsync_path
from nowcast.io.cf import forecast_filename
from nowcast.models.spec import ModelSpec
from nowcast.ops.schedule import deadline, expected_scan, utc_now
from nowcast.ops.settings import OperateSettings
from nowcast.ops.state import (
    CycleRecord,
    StateFolder,
    apply_retention,
    move_into,
    quarantine,
    remove_temporaries,
)
from nowcast.types import issue_seed

log = logging.getLogger("nowcast.operate")


class HandOver(RuntimeError):
    """A model of the fallback chain cannot make this cycle's forecast; the next one is tried."""


@dataclass
class _Inputs:
    """The open store of a cycle and what every model reads from it."""

    ds: xr.Dataset
    step: np.timedelta64
    rows: slice
    cols: slice
    issue: np.datetime64
    motions: dict[int, torch.Tensor] = field(default_factory=dict)


def _iso(t: np.datetime64 | dt.datetime) -> str:
    return f"{np.datetime64(t, 's')}Z"


def failure_reason(exc: BaseException) -> str:
    """What a cycle's log says of ``exc``: the exception's type and message, or for a store damaged
    outside nowcast what happened and the fix."""
    return damaged_store_message(exc) if undecodable_chunk(exc) else f"{type(exc).__name__}: {exc}"


class Operator:
    """Runs cycles of one job; keeps loaded models between cycles of a long-lived service."""

    def __init__(self, settings: OperateSettings) -> None:
        self.s = settings
        self.state = StateFolder(settings.state)
        self._forecasters: dict[str, Any] = {}

    # ------------------------------------------------------------------ the cycle
    def run_cycle(self, now: dt.datetime | None = None, wait: bool = True) -> CycleRecord:
        """One cycle at ``now`` (default: the clock; a past time replays an archive).

        ``wait``: wait up to ``grace_seconds`` for a late scan (else decide at once). Raises
        :class:`nowcast.fsutil.LockedError` if another cycle of this job is running; every other
        problem is recorded as the cycle's outcome and reason.
        """
        t0 = time.perf_counter()
        now = now or utc_now()
        record = CycleRecord(started=_iso(np.datetime64(now, "s")))
        model_seconds: dict[str, float] = {}
        with WriterLock(self.state.lock_folder, command=f"nowcast operate (cycle at {record.started})"):
            try:
                self._cycle(record, now, wait, t0, model_seconds)
            except Exception as exc:  # a cycle never dies with the service: say why, go on
                reason = failure_reason(exc)
                if isinstance(exc, WriteError) or undecodable_chunk(exc):  # the message says all
                    log.error("cycle failed: %s", reason)
                else:
                    log.exception("cycle failed")
                record.outcome, record.reason = "failed", reason
            finally:
                record.seconds["total"] = round(time.perf_counter() - t0, 3)
                self.state.record(record, model_seconds)
        log.info(
            "cycle %s: %s%s",
            record.issue_time or record.started,
            record.outcome,
            f" ({record.reason})" if record.reason else "",
        )
        return record

    def _cycle(
        self, record: CycleRecord, now: dt.datetime, wait: bool, t0: float, model_seconds: dict[str, float]
    ) -> None:
        s = self.s
        issue = expected_scan(now, s.interval, s.offset)
        record.issue_time = _iso(issue)
        remove_temporaries(s.output)

        stage = time.perf_counter()
        stored = self._ingest_until(issue, record, wait)
        record.seconds["ingest"] = round(time.perf_counter() - stage, 3)
        self._housekeeping(record)
        if not stored:
            return

        path = s.output / forecast_filename(s.product, issue, f".{s.format}")  # whichever model made it
        if path.exists():
            record.outcome, record.output = "up_to_date", str(path)
            return
        inputs = self._open_inputs(issue)
        try:
            forecaster, rain, frames, needed = self._forecast_with_fallback(inputs, record, t0, model_seconds)
            if forecaster is None:
                record.outcome = "failed"
                record.reason = "every model of the chain failed: " + "; ".join(
                    f"{m['model']}: {m['reason']}" for m in record.models
                )
                return
            stage = time.perf_counter()
            self._write(inputs, forecaster, rain, frames, needed, path, record)
            record.seconds["write"] = round(time.perf_counter() - stage, 3)
        finally:
            inputs.ds.close()
        record.outcome, record.output, record.model = "written", str(path), forecaster.name
        record.inputs = [_iso(t) for t in needed]

    # ------------------------------------------------------------------ ingest
    def _ingest_until(self, issue: np.datetime64, record: CycleRecord, wait: bool) -> bool:
        """Ingest until the scan ``issue`` is stored or the grace time is over; True if stored."""
        give_up = time.monotonic() + (self.s.grace_seconds if wait else 0.0)
        while True:
            self._ingest(record)
            times = self._stored_times()
            if issue in times:
                return True
            if time.monotonic() >= give_up:
                newest = _iso(times.max()) if len(times) else "none"
                record.outcome = "skipped"
                record.reason = (
                    f"the scan of {_iso(issue)} has not arrived (waited "
                    f"{self.s.grace_seconds if wait else 0:g} s; newest stored scan: {newest})"
                )
                return False
            time.sleep(min(self.s.poll_seconds, max(give_up - time.monotonic(), 0.0)))

    def _stored_times(self) -> np.ndarray:
        from data_pipelines.store import is_zarr_store, stored_index

        if not is_zarr_store(self.s.store):
            return np.array([], dtype="datetime64[s]")
        times, ds = stored_index(self.s.store)
        ds.close()
        return times.astype("datetime64[s]")

    def _ingest(self, record: CycleRecord) -> None:
        """Ingest the settled files of the incoming folder; quarantine the bad ones."""
        from data_pipelines.ingest import ingest_files
        from data_pipelines.sources import detect_source, get_source

        s = self.s
        if not s.incoming.is_dir():
            raise FileNotFoundError(f"incoming folder {s.incoming} does not exist")
        spec = get_source(s.source) if s.source else None
        settled_before = time.time() - s.settle_seconds
        files = []
        for p in sorted(s.incoming.rglob("*")):
            if not p.is_file() or p.name.startswith(".") or p.stat().st_mtime > settled_before:
                continue  # hidden (a sender's temporary name) or still being written
            try:
                matches = spec.matches(p) if spec else bool(detect_source(p))
            except ValueError:
                matches = False
            if matches:
                files.append(p)
            else:
                self._quarantine(
                    p, f"not a {s.source or 'radar'} file that nowcast reads (file name)", record
                )
        if not files:
            return
        report = ingest_files(
            files, s.store, source=s.source, coarsen=s.coarsen, progress=False, max_rain_mm_h=s.max_rain_rate
        )
        for name, why in report.skipped:
            self._quarantine(Path(name), why, record)
        record.ingested += [Path(p).name for p in report.ingested]
        for name in [*report.ingested, *(p for p, _ in report.duplicates)]:
            self._done_with(Path(name))

    def _quarantine(self, path: Path, reason: str, record: CycleRecord) -> None:
        target = quarantine(path, self.s.quarantine, reason)
        log.warning("quarantined %s: %s", path.name, reason)
        record.quarantined.append({"file": path.name, "reason": reason, "moved_to": str(target)})

    def _done_with(self, path: Path) -> None:
        """A raw file whose scan is stored leaves the incoming folder (processed folder or deleted)."""
        if not path.exists():
            return
        if self.s.processed is None:
            path.unlink()
        else:
            move_into(path, self.s.processed)  # a redelivered name never replaces the kept file
        fsync_path(path.parent)

    def _housekeeping(self, record: CycleRecord) -> None:
        folders = [self.s.output, self.s.quarantine, *([self.s.processed] if self.s.processed else [])]
        record.removed_by_retention = apply_retention(folders, self.s.retention_hours)

    # ------------------------------------------------------------------ forecast
    def _open_inputs(self, issue: np.datetime64) -> _Inputs:
        from nowcast.data.store import open_store
        from nowcast.ops.inputs import parse_crop
        from nowcast.schema import timestep

        ds = open_store(self.s.store)
        cadence = np.timedelta64(int(round(self.s.interval.total_seconds())), "s")
        step = timestep(ds) if ds.sizes["time"] > 1 else cadence
        if step != cadence:
            ds.close()
            raise ValueError(
                f"the store {self.s.store} has a {step / np.timedelta64(1, 'm'):g}-minute time step, "
                f"the job runs every {self.s.interval_minutes:g} minutes (interval_minutes)"
            )
        rows, cols = parse_crop(self.s.crop, ds.sizes["y"], ds.sizes["x"])
        return _Inputs(ds, step, rows, cols, issue)

    def _forecaster(self, spec: ModelSpec) -> Any:
        """The chain's model ``spec``, loaded once per process."""
        key = str(spec)
        if key not in self._forecasters:
            self._forecasters[key] = spec.load()
        return self._forecasters[key]

    def _forecast_with_fallback(
        self, inputs: _Inputs, record: CycleRecord, t0: float, model_seconds: dict[str, float]
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
        """Try the chain in order; returns (forecaster, rain (M, T, H, W), frames (n_in, H, W), input
        times) of the first that succeeds, or (None, ...) if none does."""
        s = self.s
        h, w = inputs.rows.stop - inputs.rows.start, inputs.cols.stop - inputs.cols.start
        record.seconds.setdefault("motion", 0.0)
        record.seconds.setdefault("forecast", 0.0)
        chain = s.chain
        for position, spec in enumerate(chain):
            name = str(spec)
            entry: dict[str, Any] = {"model": name}
            record.models.append(entry)
            stage = time.perf_counter()
            try:
                forecaster, frames, needed = self._prepare_model(spec, inputs, (h, w))
                grid = f"{h}x{w}, {s.members} members"
                left = s.latency_budget_seconds - (time.perf_counter() - t0)
                last_resort = position == len(chain) - 1  # a late forecast beats none: no deadline
                last = self.state.model_seconds(name, grid)
                if not last_resort and last is not None and last > left:
                    raise HandOver(
                        f"would overrun the latency budget: took {last:.1f} s last time, {left:.1f} s left"
                    )
                with deadline(None if last_resort else left, f"{name} forecast"):
                    motion = self._motion(forecaster, frames, inputs, record)
                    started = time.perf_counter()
                    generator = torch.Generator().manual_seed(issue_seed(s.seed, inputs.issue))
                    rain = forecaster.forecast(
                        torch.from_numpy(frames)[None], s.n_out, s.members, generator, motion=motion
                    )[0].numpy()
                took = time.perf_counter() - started
                model_seconds[f"{name} @ {grid}"] = round(time.perf_counter() - stage, 3)
                record.seconds["forecast"] += round(took, 3)
                entry.update(outcome="used", seconds=round(time.perf_counter() - stage, 3))
                return forecaster, rain, frames, needed
            except Exception as exc:  # any failure of one model hands over to the next
                reason = str(exc) if isinstance(exc, HandOver) else failure_reason(exc)
                entry.update(
                    outcome="passed over", reason=reason, seconds=round(time.perf_counter() - stage, 3)
                )
                log.warning("%s hands over: %s", name, reason)
        return None, np.empty(0), np.empty(0), np.empty(0)

    def _prepare_model(
        self, spec: ModelSpec, inputs: _Inputs, shape: tuple[int, int]
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        """Load and bind ``spec``'s model and read its input frames (n_in, H, W) mm/h; HandOver if it
        cannot run."""
        from nowcast.models.base import bind_to_store
        from nowcast.ops.inputs import frames_without_data, input_times, missing_inputs, store_description
        from nowcast.schema import RAIN

        forecaster = self._forecaster(spec)
        bind_to_store(
            forecaster, store_description(inputs.ds, self.s.store, inputs.step), self.s.n_out, shape=shape
        )
        needed = input_times(inputs.issue, forecaster.n_in, inputs.step)
        missing = missing_inputs(inputs.ds.time.values, inputs.issue, forecaster.n_in, inputs.step)
        if missing:
            raise HandOver(f"missing input frame(s) {', '.join(missing)} (gap in the scans)")
        blank = frames_without_data(
            inputs.ds, {t.astype("datetime64[ns]").tolist() for t in needed}, inputs.rows, inputs.cols
        )
        if blank:
            raise HandOver(
                f"input frame(s) {', '.join(_iso(np.datetime64(t, 's')) for t in sorted(blank))} "
                "hold no radar data (all NaN)"
            )
        frames = inputs.ds[RAIN].sel(time=needed.astype("datetime64[ns]")).isel(y=inputs.rows, x=inputs.cols)
        return forecaster, frames.values.astype(np.float32), needed

    def _motion(
        self, forecaster: Any, frames: np.ndarray, inputs: _Inputs, record: CycleRecord
    ) -> torch.Tensor | None:
        """The optical flow of the model's input frames (computed once per frame count and cycle)."""
        if not forecaster.uses_motion:
            return None
        n = frames.shape[0]
        if n not in inputs.motions:
            from nowcast.data.motion import estimate_motion

            started = time.perf_counter()
            inputs.motions[n] = torch.from_numpy(estimate_motion(frames))[None]
            record.seconds["motion"] += round(time.perf_counter() - started, 3)
        return inputs.motions[n]

    # ------------------------------------------------------------------ output
    def _write(
        self,
        inputs: _Inputs,
        forecaster: Any,
        rain: np.ndarray,
        frames: np.ndarray,
        needed: np.ndarray,
        path: Path,
        record: CycleRecord,
    ) -> None:
        from nowcast.io.cf import Provenance, forecast_dataset, write_forecast
        from nowcast.schema import SOURCE_FILE

        ds = inputs.ds
        files = (
            ds[SOURCE_FILE].sel(time=needed.astype("datetime64[ns]")).values.tolist()
            if SOURCE_FILE in ds
            else []
        )
        passed = [{"model": m["model"], "reason": m["reason"]} for m in record.models if m.get("reason")]
        prov = Provenance(
            forecaster=forecaster.describe(),
            input_store=str(self.s.store),
            input_times=needed,
            input_files=files,
            extra={
                "product": self.s.product,
                "model_chain": " | ".join(str(spec) for spec in self.s.chain),
                "fallback_from": json.dumps(passed),
                "input_origin": "nowcast operate",
            },
        )
        coverage = np.isfinite(frames).all(axis=0)
        out = forecast_dataset(
            rain, inputs.issue, inputs.step, ds.isel(y=inputs.rows, x=inputs.cols), prov, coverage
        )
        write_forecast(out, path)
        if self.s.quicklook != "none":
            from nowcast.io.quicklook import QUICKLOOK_KINDS, write_quicklooks

            last = np.where(coverage, frames[-1], np.nan)
            write_quicklooks(out, path, QUICKLOOK_KINDS[self.s.quicklook], last_observed=last)
        log.info("wrote %s (%s, inputs %s .. %s)", path, forecaster.name, _iso(needed[0]), _iso(needed[-1]))
