"""What the operational job remembers between cycles and shows to monitoring, in its state folder.

- ``cycles.jsonl``: one JSON line per cycle (:class:`CycleRecord`), appended and fsynced;
- ``status.json``: last success, last error, consecutive failures, the last cycle's outcome and
  the seconds each model last took (what the latency check of the next cycle uses), replaced
  atomically so a monitoring system never reads half a file;
- ``cycle.lock``: the lock that lets one cycle run at a time (:class:`nowcast.fsutil.WriterLock`).

Also the housekeeping of the other folders: quarantining bad input files, removing temporary
files of killed runs, and retention.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nowcast.fsutil import atomic_write, fsync_path, remove_path

log = logging.getLogger("nowcast.operate")

@dataclass
class CycleRecord:
    """What one cycle did; written as one JSON line of ``cycles.jsonl``.

    ``outcome``: "written" (a forecast), "up_to_date" (it already existed), "skipped" (no
    forecast possible this cycle: a late scan, say) or "failed" (every model of the chain failed,
    or an error). ``seconds`` holds the wall time of each stage (ingest, including any wait for a
    late scan; motion; forecast; write) and ``total``; ``models`` one entry per model of the
    fallback chain that was tried or passed over, with its outcome and reason.
    """

    started: str
    outcome: str = "failed"
    issue_time: str | None = None
    reason: str = ""
    model: str | None = None
    output: str | None = None
    inputs: list[str] = field(default_factory=list)
    ingested: list[str] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    removed_by_retention: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class StateFolder:
    """The state folder of one operational job (created if missing)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def lock_folder(self) -> Path:
        """The folder whose :class:`~nowcast.fsutil.WriterLock` is the cycle lock (``cycle.lock``)."""
        return self.folder / "cycle"

    @property
    def log_path(self) -> Path:
        return self.folder / "cycles.jsonl"

    @property
    def status_path(self) -> Path:
        return self.folder / "status.json"

    def status(self) -> dict[str, Any]:
        """The last status written ({} before the first cycle or if the file is unreadable)."""
        try:
            status = json.loads(self.status_path.read_text())
            return status if isinstance(status, dict) else {}
        except (OSError, ValueError):
            return {}

    def model_seconds(self, model: str, grid: str) -> float | None:
        """Seconds ``model`` last took on a forecast of ``grid`` ("HxW, M members"), if known."""
        return self.status().get("model_seconds", {}).get(f"{model} @ {grid}")

    def record(self, cycle: CycleRecord, model_seconds: dict[str, float]) -> None:
        """Append ``cycle`` to the log and update the status file."""
        with open(self.log_path, "a") as f:
            f.write(cycle.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        status = self.status()
        ok = cycle.outcome in ("written", "up_to_date")
        status["last_cycle"] = {
            k: getattr(cycle, k) for k in ("started", "outcome", "issue_time", "reason", "model", "output")
        }
        if ok:
            status["last_success"] = status["last_cycle"]
            status["consecutive_failures"] = 0
        else:
            status["consecutive_failures"] = int(status.get("consecutive_failures", 0)) + 1
            status["last_error"] = status["last_cycle"]
        status["model_seconds"] = {**status.get("model_seconds", {}), **model_seconds}
        atomic_write(self.status_path, json.dumps(status, indent=2, sort_keys=True) + "\n")


def free_name(path: Path, folder: Path) -> Path:
    """Where ``path`` can go in ``folder`` without replacing anything: its own name, or, when a file
    of that name is there, ``<stem>.<n><suffix>`` with the first free n."""
    target = folder / path.name
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    return target


def move_into(path: Path, folder: Path, reason: str | None = None) -> Path:
    """Move the input file ``path`` into ``folder`` (created if needed) under a :func:`free_name`, so
    a file already kept there is never replaced, with a ``<name>.reason.txt`` beside it if ``reason``
    is given; and stamp it with the time of the move, so the folder's retention counts its age from
    its arrival there, not from when it was written (a file copied with its times kept may be days
    old on arrival). Returns where it went."""
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(path, folder)
    if reason is not None:
        atomic_write(target.with_name(target.name + ".reason.txt"), reason + "\n")
    shutil.move(str(path), target)
    os.utime(target)
    fsync_path(folder)
    return target


def quarantine(path: Path, folder: Path, reason: str) -> Path:
    """Move the bad input file ``path`` into the quarantine ``folder`` with the reason beside it
    (:func:`move_into`); a file of the same name already there is kept."""
    return move_into(path, folder, reason)


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove what killed writers left in ``folder``: ``.<name>.tmp-*`` forecasts (files or zarr
    folders) and ``*.tmp-<pid>`` files. Only call while holding the folder's writer (the cycle lock)."""
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if ".tmp-" in p.name:
            remove_path(p)
            removed.append(p)
    if removed:
        log.warning("removed %d temporary file(s) left by a killed run in %s", len(removed), folder)
    return removed


def apply_retention(folders: list[Path], max_age_hours: float, now: float | None = None) -> int:
    """Delete files (and zarr folders) older than ``max_age_hours`` (by modification time) directly
    inside each of ``folders``; returns how many were removed. ``max_age_hours`` <= 0 keeps all."""
    if max_age_hours <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - max_age_hours * 3600.0
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") or p.stat().st_mtime >= cutoff:
                continue
            remove_path(p)
            removed += 1
    return removed
