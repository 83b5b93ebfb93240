"""Crash-safe file-system primitives: one writer per folder, atomic file writes. No internal imports.

- :class:`WriterLock`: an exclusive ``flock`` on ``<folder>.lock`` beside the folder (so it can be
  taken before the folder exists). The file names the holder (pid, host, start time, command) so a
  refused writer can say who holds it. The kernel drops the lock when its holder dies, however it
  dies, so a lock file left by a killed writer is simply taken over (and logged).
- :func:`atomic_write`: temporary name in the same folder, flush + fsync, ``os.replace``, fsync of
  the folder: readers see the old file or the new one, never a part, even after a power cut.
- :func:`writing`: a failed write (a full disk, a folder not writable) as :class:`WriteError`,
  one line naming the file.
- :func:`settle_zarr_writes`: wait for the chunk writes zarr goes on with after one of them failed,
  before cleaning up what a failed zarr write left.

Temporary names end in ``.tmp-<pid>``: a run that holds the folder's lock may delete any
``*.tmp-*`` it finds there (they are leftovers of killed runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: suffix of the lock file beside the locked folder
LOCK_SUFFIX = ".lock"


class LockedError(RuntimeError):
    """Another live process holds the writer lock of ``path``; ``holder``: what its lock file says."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path, self.holder = path, holder
        who = "another process"
        if holder:
            pid, host, since = (holder.get(key, "?") for key in ("pid", "host", "since"))
            who = f"pid {pid} on {host} since {since}"
            who += f" ({holder['command']})" if holder.get("command") else ""
        super().__init__(f"{path} is being written by {who}; try again when it has finished")


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: ``<folder>.lock`` beside it."""
    folder = Path(folder)
    return folder.with_name(folder.name + LOCK_SUFFIX)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class WriterLock:
    """Exclusive writer lock of a folder (a store, a forecast output folder), as a context manager.

    ``with WriterLock(folder): ...`` raises :class:`LockedError` at once (no waiting) if a live
    process holds it. Not re-entrant: a process that already holds the lock is refused too.
    ``command`` is recorded for the refusal message (default: this process's command line).
    """

    def __init__(self, folder: str | Path, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        if command is None:
            command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.command = command if len(command) <= 120 else command[:117] + "..."
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockedError(self.folder, holder) from None
            # the previous holder unlinks the file on release: if ours is no longer the file at
            # that path, we locked an orphan inode and must start again
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd)
        if stale:
            log.warning("taking over the stale lock of %s: its holder pid %s on %s (since %s) is gone",
                        self.folder, stale.get("pid", "?"), stale.get("host", "?"), stale.get("since", "?"))
        since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": since, "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while still holding the lock, so nobody can lock this inode and then lose it
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def fsync_path(path: str | Path) -> None:
    """Make durable the content of the file at ``path``, or the renames and deletions inside the
    folder at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path: str | Path) -> None:
    """Remove a file or a whole folder (a zarr store); nothing there is not an error."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class WriteError(OSError):
    """A file could not be written; the message names it and why (see :func:`writing`)."""


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Raise what fails while ``path`` is written (an ``OSError`` such as ENOSPC, or the
    ``RuntimeError('NetCDF: HDF error')`` of netCDF4 on a full disk) as :class:`WriteError`:
    "cannot write <path>: <reason> (disk full or not writable?)". Cleaning up is the caller's."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not str(err).startswith("NetCDF:"):
            raise  # not a file-system failure
        reason = (err.strerror if isinstance(err, OSError) else None) or str(err) or type(err).__name__
        raise WriteError(f"cannot write {path}: {reason} (disk full or not writable?)") from err


def settle_zarr_writes(timeout_s: float = 30.0) -> None:
    """Wait (at most ``timeout_s``) until zarr's IO thread has finished every task it started.

    zarr writes the chunks of one ``to_zarr`` as concurrent tasks on an event loop of its own. When
    one fails (a full disk), the error reaches the caller while the other tasks go on writing: they
    would recreate chunks (and their folders) in a temporary store the caller is removing, or in a
    store it is rolling back, and leave the disk full. Call this after a failed zarr write, before
    cleaning up. Without zarr, or before its first write, there is nothing to wait for.
    """
    try:
        from zarr.core import sync as zarr_sync
    except ImportError:  # pragma: no cover  (zarr is a dependency; fsutil does not need it)
        return
    loop = zarr_sync.loop[0]
    if loop is None or loop.is_closed():
        return

    async def others_done() -> None:
        me = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not me]
        if others:
            await asyncio.wait(others, timeout=timeout_s)

    asyncio.run_coroutine_threadsafe(others_done(), loop).result(timeout_s + 5.0)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` (str: UTF-8) atomically and durably; a failed write (a full
    disk) raises :class:`WriteError` naming ``path`` and leaves the old file as it was."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with writing(path):
        try:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:  # a failed write leaves neither a part nor its temporary file
            tmp.unlink(missing_ok=True)
        fsync_path(path.parent)


def fsync_tree(folder: str | Path, newer_than: float | None = None) -> None:
    """fsync every file under ``folder`` (only those modified after ``newer_than``, a POSIX time in
    s, if given) and every folder, so that what a commit step declares written is on disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            if newer_than is not None and os.stat(p).st_mtime < newer_than:
                continue
            fsync_path(p)
        fsync_path(root)
