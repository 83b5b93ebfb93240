"""``nowcast operate``: the scheduled operational nowcast job (cron, a systemd timer or a service).

Each cycle ingests the new raw scans of an incoming folder into the operational store, forecasts
from the scan the cycle is due for with the first model of a fallback chain that succeeds within
the latency budget, writes one CF forecast file (atomically) and records what it did: one JSON
line in ``<state>/cycles.jsonl`` and ``<state>/status.json`` for monitoring.

Examples::

    nowcast operate --config configs/operate.yaml --once          # one cycle (cron, systemd timer)
    nowcast operate --config configs/operate.yaml                 # a service: one cycle per scan
    nowcast operate --config configs/operate.yaml --once --now 2016-07-11T16:06   # replay an archive

Exit status of ``--once``: 0 a forecast was written (or already was), 3 skipped (the scan is late or
missing, a gap: the reason is logged), 1 failed (every model of the chain failed), 2 refused (another
cycle of this job is running, a bad configuration).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import signal
import time
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

from nowcast.cli import command_parser, fail
from nowcast.ops.settings import OperateSettings

HELP = "run the operational nowcast job: ingest new scans, forecast with a fallback chain, every cycle"

log = logging.getLogger("nowcast.operate")


def _field_defaults() -> dict[str, Any]:
    """The defaults of :class:`OperateSettings`' fields: one source for the options and the class."""
    defaults = {}
    for f in dataclasses.fields(OperateSettings):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


DEFAULT = _field_defaults()

#: exit codes of one cycle (``--once``) by outcome
EXIT_CODES = {"written": 0, "up_to_date": 0, "skipped": 3, "failed": 1}


def build_parser() -> ArgumentParser:
    p = command_parser("nowcast operate", description=__doc__)
    p.add_argument("--config", action=ActionConfigFile, help="YAML file of the job (configs/operate.yaml)")
    p.add_argument(
        "--once",
        action=ActionYesNo,
        default=False,
        help="run one cycle and exit (for cron or a systemd timer)",
    )
    p.add_argument(
        "--now",
        type=str | None,
        default=None,
        help="run as if the clock said this UTC time (ISO): replays an archive, one cycle",
    )
    f = p.add_argument_group("Folders")
    f.add_argument("--incoming", type=str, default="ops/incoming", help="raw radar files arrive here")
    f.add_argument("--store", type=str, default="ops/store.zarr", help="the operational rain store (zarr)")
    f.add_argument("--output", type=str, default="ops/forecasts", help="forecast files are written here")
    f.add_argument("--state", type=str, default="ops/state", help="cycle lock, cycles.jsonl, status.json")
    f.add_argument(
        "--quarantine",
        type=str,
        default="ops/quarantine",
        help="unreadable, foreign or impossible input files are moved here with their reason",
    )
    f.add_argument(
        "--processed",
        type=str | None,
        default="ops/processed",
        help="ingested raw files are moved here (null: deleted once stored)",
    )
    i = p.add_argument_group("Ingest")
    i.add_argument(
        "--source",
        type=str | None,
        default=DEFAULT["source"],
        help="radar source name (knmi, fmi, mch, rmi, bom, odim); null: detect from file names",
    )
    i.add_argument(
        "--coarsen",
        type=int,
        default=DEFAULT["coarsen"],
        help="average NxN pixels on ingest (2: 1 km -> 2 km)",
    )
    i.add_argument(
        "--max-rain-rate",
        type=float,
        default=DEFAULT["max_rain_rate"],
        help="mm/h above which a frame is impossible and its file quarantined",
    )
    m = p.add_argument_group("Forecast")
    m.add_argument(
        "--models",
        type=list[str | dict[str, Any]],
        default=DEFAULT["models"],
        help="the fallback chain, first choice first: model specs as in `nowcast forecast --model` "
        "(e.g. '[diffusion:checkpoint=my.pt, extrapolation, persistence]')",
    )
    m.add_argument(
        "--members",
        type=int,
        default=DEFAULT["members"],
        help="ensemble members (deterministic models give 1)",
    )
    m.add_argument("--n-out", type=int, default=DEFAULT["n_out"], help="lead times (store time steps)")
    m.add_argument(
        "--crop",
        type=str | None,
        default=DEFAULT["crop"],
        help="forecast a sub-window: 'y0,x0,h,w' or 'size'",
    )
    m.add_argument(
        "--seed", type=int, default=DEFAULT["seed"],
        help="seed of stochastic models (with the issue time: a cycle's members are those "
             "`nowcast forecast --seed` draws for the same issue time)",
    )
    o = p.add_argument_group("Output")
    o.add_argument(
        "--product",
        type=str,
        default=DEFAULT["product"],
        help="file name prefix: <product>_<YYYYmmddTHHMM>Z.<format>, whichever model made it",
    )
    o.add_argument(
        "--format", type=Literal["nc", "zarr"], default=DEFAULT["format"], help="forecast file format"
    )
    o.add_argument(
        "--quicklook",
        type=Literal["none", "png", "gif", "both"],
        default=DEFAULT["quicklook"],
        help="quicklooks beside each forecast",
    )
    t = p.add_argument_group("Timing")
    t.add_argument(
        "--interval-minutes",
        type=float,
        default=DEFAULT["interval_minutes"],
        help="the radar cycle (scan interval)",
    )
    t.add_argument(
        "--offset-seconds",
        type=float,
        default=DEFAULT["offset_seconds"],
        help="a cycle starts this long after its scan's nominal time",
    )
    t.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULT["grace_seconds"],
        help="how long a cycle waits for a late scan",
    )
    t.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT["poll_seconds"],
        help="how often a waiting cycle looks again",
    )
    t.add_argument(
        "--settle-seconds",
        type=float,
        default=DEFAULT["settle_seconds"],
        help="an incoming file is read once unchanged this long (a file being copied is not)",
    )
    t.add_argument(
        "--latency-budget-seconds",
        type=float,
        default=DEFAULT["latency_budget_seconds"],
        help="a cycle's forecast must be written within this; a model that would overrun hands over",
    )
    t.add_argument(
        "--retention-hours",
        type=float,
        default=DEFAULT["retention_hours"],
        help="forecasts, quarantined and processed files older than this are deleted (0: keep all)",
    )
    return p


def settings_of(cfg) -> OperateSettings:
    """The parsed options as :class:`~nowcast.ops.settings.OperateSettings` (one option per field)."""
    return OperateSettings(**{f.name: cfg[f.name] for f in dataclasses.fields(OperateSettings)})


class _Stop:
    """Set by SIGTERM/SIGINT: a service finishes its cycle, then exits."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: object) -> None:
            log.info("signal %d: stopping after the current cycle", signum)
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def serve(operator) -> int:
    """Run a cycle at every scan time + offset until stopped (SIGTERM, Ctrl-C)."""
    from nowcast.fsutil import LockedError
    from nowcast.ops.schedule import next_cycle_start, utc_now

    _Stop.install()
    s = operator.s
    log.info(
        "operating: a cycle every %g min, %g s after each scan; models %s",
        s.interval_minutes,
        s.offset_seconds,
        " -> ".join(str(spec) for spec in s.chain),
    )
    while not _Stop.requested:
        start = next_cycle_start(utc_now(), s.interval, s.offset)
        while not _Stop.requested and utc_now() < start:
            time.sleep(min(1.0, max((start - utc_now()).total_seconds(), 0.0)))
        if _Stop.requested:
            break
        try:
            operator.run_cycle(wait=True)
        except LockedError as exc:  # a cron-started cycle of the same job holds it: skip this one
            log.warning("cycle not run: %s", exc)
        except OSError as exc:  # e.g. a full disk for the lock or the cycle log: the next cycle may work
            log.error("cycle not run or not recorded: %s", exc)
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = build_parser().parse_args(argv)
    from nowcast.fsutil import LockedError
    from nowcast.ops.inputs import parse_time

    try:
        settings = settings_of(cfg)
        for spec in settings.chain:  # a typo or a missing checkpoint is refused now, not every cycle
            spec.check()
        now = None
        if cfg.now:
            now = parse_time(cfg.now).astype(dt.datetime)
        if not settings.incoming.is_dir():
            raise FileNotFoundError(
                f"incoming folder {settings.incoming} does not exist; create it or fix --incoming"
            )
    except (ValueError, FileNotFoundError) as exc:
        return fail("operate", exc)
    from nowcast.ops.cycle import Operator

    operator = Operator(settings)
    if not (cfg.once or now is not None):
        return serve(operator)
    try:
        record = operator.run_cycle(now=now, wait=True)
    except LockedError as exc:
        return fail("operate", exc)
    print(record.to_json())
    return EXIT_CODES[record.outcome]
