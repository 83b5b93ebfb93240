"""The operational job (issue 13) on real MeteoSwiss scans fed one by one into an incoming folder:
forecasts with the right issue times and CF metadata, quarantine of bad files, gaps, a dry field,
the fallback chain, kill -9 in the ingest and in the forecast write, concurrent cycles, retention."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from full_disk import LATE_S, disk_fills_at

from data_pipelines.store import create_store
from nowcast.data.store import open_store
from nowcast.io.cf import open_forecast
from nowcast.ops.cycle import Operator
from nowcast.ops.schedule import DeadlineExceeded, deadline, expected_scan, next_cycle_start
from nowcast.ops.settings import OperateSettings
from nowcast.schema import RAIN

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
MCH_EVENT = "pysteps/mch/20160711"
#: the scans used: 22:20 .. 22:50 UTC, 5 minutes apart, rainy
FIRST, N_SCANS = 19, 7
STEP = dt.timedelta(minutes=5)


def scan_time(i: int) -> dt.datetime:
    """Nominal time of the i-th scan used (0 = 22:20 UTC)."""
    return dt.datetime(2016, 7, 11, 22, 20) + i * STEP


def cycle_time(i: int) -> dt.datetime:
    """When the cycle of scan i runs: one minute after it (the default offset) plus 5 s."""
    return scan_time(i) + dt.timedelta(seconds=65)


@pytest.fixture
def scans(shared_radar: Path) -> list[Path]:
    files = sorted(p for p in (shared_radar / MCH_EVENT).iterdir() if p.is_file())
    return files[FIRST : FIRST + N_SCANS]


def settings(root: Path, **kw) -> OperateSettings:
    base = dict(
        incoming=root / "incoming",
        store=root / "store.zarr",
        output=root / "forecasts",
        state=root / "state",
        quarantine=root / "quarantine",
        processed=root / "processed",
        coarsen=4,
        models=["extrapolation", "persistence"],
        members=1,
        n_out=3,
        grace_seconds=0,
        settle_seconds=0,
    )
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    return OperateSettings(**{**base, **kw})


def deliver(files: list[Path], s: OperateSettings) -> None:
    for f in files:
        shutil.copy(f, s.incoming / f.name)


def operate_cli(s: OperateSettings, *options: str) -> list[str]:
    """The `nowcast operate` command line of the job ``s`` (its folders), plus ``options``."""
    folders = ("incoming", "store", "output", "state", "quarantine")
    return [
        sys.executable,
        "-m",
        "nowcast.cli",
        "operate",
        *(x for key in folders for x in (f"--{key}", str(getattr(s, key)))),
        *options,
    ]


def log_lines(s: OperateSettings) -> list[dict]:
    return [json.loads(line) for line in (s.state / "cycles.jsonl").read_text().splitlines()]


def test_schedule_clock() -> None:
    offset = dt.timedelta(seconds=60)
    assert expected_scan(dt.datetime(2016, 7, 11, 22, 41, 5), STEP, offset) == np.datetime64(
        "2016-07-11T22:40"
    )
    assert expected_scan(dt.datetime(2016, 7, 11, 22, 40, 59), STEP, offset) == np.datetime64(
        "2016-07-11T22:35"
    )
    assert next_cycle_start(dt.datetime(2016, 7, 11, 22, 41, 5), STEP, offset) == dt.datetime(
        2016, 7, 11, 22, 46
    )
    with pytest.raises(DeadlineExceeded), deadline(0.2, "a spin"):
        while True:
            sum(range(1000))


def test_feed_one_by_one_gives_each_issue_time_its_forecast(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path)
    op = Operator(s)
    deliver(scans[:4], s)
    for i in range(3, 6):
        if i > 3:
            deliver([scans[i]], s)
        record = op.run_cycle(now=cycle_time(i), wait=False)
        assert record.outcome == "written", record.reason
        assert record.issue_time == f"{np.datetime64(scan_time(i), 's')}Z"
    again = op.run_cycle(now=cycle_time(5), wait=False)
    assert again.outcome == "up_to_date"
    written = sorted(p.name for p in s.output.iterdir())
    assert written == ["nowcast_20160711T2235Z.nc", "nowcast_20160711T2240Z.nc", "nowcast_20160711T2245Z.nc"]
    fc = open_forecast(s.output / written[-1])
    assert fc.attrs["Conventions"].startswith("CF-")
    assert fc.attrs["model"] == "extrapolation" and json.loads(fc.attrs["fallback_from"]) == []
    assert fc["forecast_reference_time"].values == np.datetime64("2016-07-11T22:45", "ns")
    assert json.loads(fc.attrs["input_times"])[-1] == "2016-07-11T22:45:00Z"
    assert fc[RAIN].attrs["units"] == "mm h-1" and fc.sizes["lead_time"] == 3
    # NaN outside the radar coverage stays NaN; rain inside it is forecast
    inputs = (
        open_store(s.store)[RAIN].sel(time=[np.datetime64(scan_time(i), "ns") for i in range(2, 6)]).values
    )
    assert np.array_equal(np.isnan(fc[RAIN].values).all(axis=(0, 1)), np.isnan(inputs).any(axis=0))
    assert np.isnan(inputs).any()
    assert np.nanmax(fc[RAIN].values) > 1.0
    # the raw files left the incoming folder once stored; the log has one line per cycle
    assert not list(s.incoming.iterdir()) and len(list(s.processed.iterdir())) == 6
    lines = log_lines(s)
    assert [ln["outcome"] for ln in lines] == ["written", "written", "written", "up_to_date"]
    assert {"ingest", "motion", "forecast", "write", "total"} <= set(lines[0]["seconds"])
    status = json.loads((s.state / "status.json").read_text())
    assert (
        status["consecutive_failures"] == 0 and status["last_success"]["issue_time"] == "2016-07-11T22:45:00Z"
    )


def test_bad_files_are_quarantined_and_the_good_ones_forecast(
    tmp_path: Path, scans: list[Path], shared_radar: Path
) -> None:
    s = settings(tmp_path)
    deliver(scans[:4], s)
    (s.incoming / scans[4].name).write_bytes(scans[4].read_bytes()[:300])  # truncated scan 22:40
    (s.incoming / "AQC161932245V_00005.801.gif").write_bytes(b"")  # zero bytes, scan 22:45
    fmi = sorted((shared_radar / "pysteps/fmi/pgm/20160928").iterdir())[20]
    shutil.copy(fmi, s.incoming / fmi.name)  # another network, another grid
    (s.incoming / "README.txt").write_text("not radar")
    record = Operator(s).run_cycle(now=cycle_time(3), wait=False)
    assert record.outcome == "written", record.reason
    reasons = {q["file"]: q["reason"] for q in record.quarantined}
    assert set(reasons) == {scans[4].name, "AQC161932245V_00005.801.gif", fmi.name, "README.txt"}
    assert "grid" in reasons[fmi.name].lower()
    for name in reasons:
        assert (s.quarantine / name).exists() and (s.quarantine / f"{name}.reason.txt").exists()
    assert not list(s.incoming.iterdir())  # nothing is retried forever
    assert open_store(s.store).sizes["time"] == 4


def test_gap_and_late_scan_are_named(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path, models=["extrapolation"])
    deliver([scans[0], scans[1], scans[3], scans[4]], s)  # 22:30 missing
    record = Operator(s).run_cycle(now=cycle_time(4), wait=False)
    assert record.outcome == "failed" and "2016-07-11T22:30:00Z" in record.reason
    late = Operator(s).run_cycle(now=cycle_time(5), wait=False)  # 22:45 never arrives
    assert late.outcome == "skipped" and "22:45:00Z has not arrived" in late.reason
    status = json.loads((s.state / "status.json").read_text())
    assert status["consecutive_failures"] == 2 and "22:45" in status["last_error"]["reason"]
    # the same gap with a fallback: persistence needs only the last scan and names who failed why
    s2 = settings(tmp_path / "b")
    deliver([scans[0], scans[1], scans[3], scans[4]], s2)
    record = Operator(s2).run_cycle(now=cycle_time(4), wait=False)
    assert record.outcome == "written" and record.model == "persistence"
    passed = json.loads(open_forecast(record.output).attrs["fallback_from"])
    assert passed[0]["model"] == "extrapolation" and "22:30:00Z" in passed[0]["reason"]


def test_dry_field_gives_an_all_zero_forecast(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path, models=["extrapolation"], members=2)
    deliver(scans[:1], s)
    Operator(s).run_cycle(now=cycle_time(0), wait=False)  # the real grid, then four dry scans
    one = open_store(s.store).load()
    covered = np.isfinite(one[RAIN].values[0])
    dry = xr.concat(
        [one.assign_coords(time=[np.datetime64(scan_time(i), "ns")]) for i in range(1, 5)],
        "time",
        data_vars="all",
    )
    dry[RAIN].values[:] = np.where(covered, 0.0, np.nan)
    dry["rain_fraction"].values[:] = 0.0
    shutil.rmtree(s.store)
    create_store(dry, s.store)
    record = Operator(s).run_cycle(now=cycle_time(4), wait=False)
    assert record.outcome == "written", record.reason
    rain = open_forecast(record.output)[RAIN].values
    assert np.all(rain[:, :, covered] == 0.0) and np.all(np.isnan(rain[:, :, ~covered]))


def test_fallback_on_overrun(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path, latency_budget_seconds=30)
    deliver(scans[:4], s)
    op = Operator(s)
    # judged from its last run: extrapolation took longer than the budget last time
    assert op.run_cycle(now=cycle_time(3), wait=False).outcome == "written"
    shutil.rmtree(s.output)
    status = json.loads((s.state / "status.json").read_text())
    (key,) = status["model_seconds"]
    assert key.startswith("extrapolation @ ")
    status["model_seconds"][key] = 120.0
    (s.state / "status.json").write_text(json.dumps(status))
    record = op.run_cycle(now=cycle_time(3), wait=False)
    assert record.model == "persistence", record.models
    assert "would overrun the latency budget" in record.models[0]["reason"]
    # actually overrunning: a model stopped at its deadline hands over
    slow = op._forecaster("extrapolation")
    fast_forecast = slow.forecast

    def crawl(*args, **kwargs):
        time.sleep(60)
        return fast_forecast(*args, **kwargs)

    slow.forecast = crawl
    (s.state / "status.json").unlink()
    s.latency_budget_seconds = 3
    shutil.rmtree(s.output)
    t0 = time.perf_counter()
    record = op.run_cycle(now=cycle_time(3), wait=False)
    assert time.perf_counter() - t0 < 30
    assert record.model == "persistence" and "deadline" in record.models[0]["reason"]


#: a child that runs one cycle and SIGKILLs itself at the moment named by argv[1]
CHILD = textwrap.dedent("""
    import datetime as dt, json, os, signal, sys
    from pathlib import Path

    import zarr.storage

    import nowcast.io.cf as cf
    from nowcast.ops.cycle import Operator
    from nowcast.ops.settings import OperateSettings

    point, settings, now = sys.argv[1], json.loads(sys.argv[2]), dt.datetime.fromisoformat(sys.argv[3])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    set_chunk = zarr.storage.LocalStore.set

    async def spy_set(self, key, value):
        await set_chunk(self, key, value)
        if point == "ingest" and key.startswith("rain_rate/") and not key.rsplit("/", 1)[1].startswith("."):
            die()  # the first new frame's data is on disk, the append is not committed

    zarr.storage.LocalStore.set = spy_set
    replace = cf._replace

    def spy_replace(tmp, path):
        if point == "write":
            die()  # the forecast is written under its temporary name, not yet renamed
        replace(tmp, path)

    cf._replace = spy_replace
    Operator(OperateSettings(**settings)).run_cycle(now=now, wait=False)
    sys.exit(3)  # never killed: the moment did not happen
""")


@pytest.mark.parametrize("point", ["ingest", "write"])
def test_kill_9_then_a_normal_cycle_recovers(tmp_path: Path, scans: list[Path], point: str) -> None:
    s = settings(tmp_path)
    deliver(scans[:3], s)
    assert Operator(s).run_cycle(now=cycle_time(2), wait=False).outcome == "written"
    deliver(scans[3:5], s)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(s).items()}
    proc = subprocess.run(
        [sys.executable, str(script), point, json.dumps(args), cycle_time(4).isoformat()],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    final = s.output / "nowcast_20160711T2240Z.nc"
    assert not final.exists()  # never a half file at the final name
    record = Operator(s).run_cycle(now=cycle_time(4), wait=False)
    assert record.outcome == "written", record.reason
    assert sorted(p.name for p in s.output.iterdir()) == ["nowcast_20160711T2230Z.nc", final.name]
    store = open_store(s.store)
    assert [str(t)[:16] for t in store.time.values] == [
        f"{np.datetime64(scan_time(i), 'm')}" for i in range(5)
    ]
    assert np.isfinite(store[RAIN].values).any(axis=(1, 2)).all()
    assert open_forecast(final).sizes["lead_time"] == 3


def test_two_cycles_at_once_exactly_one_runs(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path)
    deliver(scans[:4], s)
    # the cycle waits 8 s for a scan that never comes, holding the lock; the second is refused
    cmd = operate_cli(
        s,
        "--once",
        "--now",
        cycle_time(4).isoformat(),
        "--processed",
        str(s.processed),
        "--coarsen",
        "4",
        "--grace-seconds",
        "8",
        "--poll-seconds",
        "1",
        "--settle-seconds",
        "0",
    )
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lock = s.state / "cycle.lock"
    t0 = time.monotonic()
    while not (lock.exists() and lock.read_text()) and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    assert "is being written by pid" in second.stderr
    assert first.returncode == 3, err[-2000:]  # skipped: the 22:40 scan never came
    assert json.loads(out.splitlines()[-1])["outcome"] == "skipped"
    assert len(log_lines(s)) == 1


def test_retention_removes_old_forecasts_and_quarantined_files(tmp_path: Path, scans: list[Path]) -> None:
    s = settings(tmp_path, retention_hours=24)
    for folder in (s.output, s.quarantine):
        folder.mkdir(parents=True)
        old, new = folder / "old.nc", folder / "new.nc"
        old.write_text("x")
        new.write_text("x")
        os.utime(old, (time.time() - 25 * 3600,) * 2)
    deliver(scans[:4], s)
    record = Operator(s).run_cycle(now=cycle_time(3), wait=False)
    assert record.removed_by_retention == 2
    assert sorted(p.name for p in s.quarantine.iterdir()) == ["new.nc"]
    assert not (s.output / "old.nc").exists() and (s.output / "new.nc").exists()



def test_files_delivered_with_old_times_survive_the_cycle_that_moves_them(
    tmp_path: Path, scans: list[Path]
) -> None:
    """Retention counts a kept file's age from its arrival in the processed or quarantine folder:
    scans copied with their times kept (an archive replay, ``cp -p``) are days old by their own time
    stamps, and used to be deleted by the very cycle that moved them there."""
    s = settings(tmp_path, retention_hours=24)
    deliver(scans[:4], s)
    (s.incoming / scans[4].name).write_bytes(scans[4].read_bytes()[:300])  # truncated: quarantined
    for f in s.incoming.iterdir():
        os.utime(f, (time.time() - 72 * 3600,) * 2)
    record = Operator(s).run_cycle(now=cycle_time(3), wait=False)
    assert record.outcome == "written", record.reason
    assert record.removed_by_retention == 0
    assert sorted(p.name for p in s.processed.iterdir()) == sorted(f.name for f in scans[:4])
    assert (s.quarantine / scans[4].name).exists() and (s.quarantine / f"{scans[4].name}.reason.txt").exists()


def test_a_redelivered_name_never_replaces_the_processed_file(tmp_path: Path, scans: list[Path]) -> None:
    """A scan delivered again under a name already in the processed folder is a duplicate of a stored
    time: it is kept under a numbered name, and the file behind the stored frame stays as it was."""
    s = settings(tmp_path)
    op = Operator(s)
    deliver(scans[:4], s)
    assert op.run_cycle(now=cycle_time(3), wait=False).outcome == "written"
    kept = (s.processed / scans[3].name).read_bytes()
    (s.incoming / scans[3].name).write_bytes(scans[4].read_bytes())  # other data, the same name
    op.run_cycle(now=cycle_time(3) + dt.timedelta(minutes=1), wait=False)
    assert (s.processed / scans[3].name).read_bytes() == kept
    copies = [p for p in s.processed.iterdir() if p.name != scans[3].name and p.name not in
              {f.name for f in scans[:3]}]
    assert [c.read_bytes() for c in copies] == [scans[4].read_bytes()]
    assert not list(s.incoming.iterdir())

def test_a_cycle_on_a_full_disk_loses_nothing_and_the_next_catches_up(
    tmp_path: Path, scans: list[Path], monkeypatch, caplog
) -> None:
    """The disk fills up while the scans are stored: the cycle fails in one log line naming the
    store (no traceback), the store keeps its frames, the scans stay in incoming/; with space
    again the next cycle stores them and writes the forecast."""
    s = settings(tmp_path)
    op = Operator(s)
    deliver(scans[:4], s)
    assert op.run_cycle(now=cycle_time(3), wait=False).outcome == "written"
    stored = open_store(s.store)[RAIN].values
    deliver(scans[4:6], s)
    disk_fills_at(monkeypatch, n=0)
    with caplog.at_level(logging.INFO):
        record = op.run_cycle(now=cycle_time(5), wait=False)
    assert record.outcome == "failed"
    full = "No space left on device (disk full or not writable?)"
    assert record.reason == f"WriteError: cannot write {s.store}: {full}"
    assert not [r for r in caplog.records if r.exc_info]
    time.sleep(3 * LATE_S)
    np.testing.assert_array_equal(open_store(s.store)[RAIN].values, stored)
    assert sorted(p.name for p in s.incoming.iterdir()) == [f.name for f in scans[4:6]]
    monkeypatch.undo()
    assert op.run_cycle(now=cycle_time(5), wait=False).outcome == "written"
    assert open_store(s.store).sizes["time"] == 6


def test_a_damaged_store_is_named_with_the_fix_in_the_cycle_log(tmp_path: Path, scans: list[Path]) -> None:
    """A stored frame damaged outside nowcast (a disk error, an interrupted copy): extrapolation,
    which reads it, hands over with the reason and the fix (it said "RuntimeError: error during
    blosc decompression: -1"); persistence, which reads only the newest frame, issues the forecast."""
    s = settings(tmp_path)
    op = Operator(s)
    deliver(scans[:4], s)
    assert op.run_cycle(now=cycle_time(3), wait=False).outcome == "written"
    chunk = s.store / RAIN / "1.0.0"  # the second frame: a past frame of the next cycle's window
    chunk.write_bytes(chunk.read_bytes()[:40])
    deliver([scans[4]], s)
    assert op.run_cycle(now=cycle_time(4), wait=False).outcome == "written"
    used = {m["model"]: m for m in log_lines(s)[-1]["models"]}
    assert used["persistence"]["outcome"] == "used" and used["extrapolation"]["outcome"] == "passed over"
    assert used["extrapolation"]["reason"].startswith("a stored chunk cannot be decoded (")
    assert "restore it from a copy" in used["extrapolation"]["reason"]


def test_service_runs_a_cycle_per_interval_and_stops_on_sigterm(tmp_path: Path) -> None:
    s = settings(tmp_path)
    # a 3-second "radar cycle" on the wall clock: no scan ever arrives, so each cycle is skipped
    cmd = operate_cli(s, "--interval-minutes", "0.05", "--offset-seconds", "0", "--grace-seconds", "0")
    service = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    log = s.state / "cycles.jsonl"
    t0 = time.monotonic()
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.monotonic() - t0 < 120:
        time.sleep(0.5)
    service.send_signal(signal.SIGTERM)
    _, err = service.communicate(timeout=60)
    assert service.returncode == 0, err[-2000:]
    lines = log_lines(s)
    assert len(lines) >= 2 and {ln["outcome"] for ln in lines} == {"skipped"}
    assert "has not arrived" in lines[0]["reason"]
    starts = [dt.datetime.fromisoformat(ln["started"].rstrip("Z")) for ln in lines[:2]]
    assert dt.timedelta(seconds=2) <= starts[1] - starts[0] <= dt.timedelta(seconds=5)


def test_the_service_outlives_a_cycle_that_cannot_write_its_state(tmp_path: Path, monkeypatch) -> None:
    """A full disk (OSError writing the lock or the cycle log) fails that cycle only: the service logs
    it and runs the next one."""
    from nowcast.commands import operate as operate_command
    from nowcast.ops import schedule

    calls: list[int] = []

    class FullDiskOperator:
        s = settings(tmp_path, interval_minutes=0.05)

        def run_cycle(self, wait: bool = True) -> None:
            calls.append(1)
            if len(calls) == 3:
                operate_command._Stop.requested = True
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(schedule, "next_cycle_start", lambda now, interval, offset: now)
    monkeypatch.setattr(operate_command._Stop, "install", classmethod(lambda cls: None))
    monkeypatch.setattr(operate_command._Stop, "requested", False)
    assert operate_command.serve(FullDiskOperator()) == 0
    assert len(calls) == 3


@pytest.mark.parametrize("bad, words", [
    ({"members": 0}, "members must be >= 1"), ({"n_out": 0}, "n_out must be"),
    ({"seed": -1}, "seed must be in 0.."), ({"grace_seconds": -5}, "grace_seconds must be >= 0"),
])
def test_settings_a_cycle_could_only_fail_on_are_refused_at_start(tmp_path: Path, bad, words) -> None:
    with pytest.raises(ValueError, match=words):
        settings(tmp_path, **bad)
