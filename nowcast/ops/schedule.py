"""When cycles run and how long a stage may take: the radar-cycle clock and a hard deadline.

A radar network scans every ``interval``; the scan of nominal time ``T`` is expected in the
incoming folder by ``T + offset``. The cycle that starts at ``T + offset`` forecasts from the
scan ``T`` (its *issue time*).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
from collections.abc import Iterator

import numpy as np


class DeadlineExceeded(TimeoutError):
    """A stage ran past its deadline (raised inside it by :func:`deadline`)."""


def utc_now() -> dt.datetime:
    """The current time, UTC, naive (the stores' convention)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def expected_scan(now: dt.datetime, interval: dt.timedelta, offset: dt.timedelta) -> np.datetime64:
    """Nominal time of the newest scan that should have arrived at ``now``: the latest multiple of
    ``interval`` (counted from midnight UTC) at or before ``now - offset``."""
    epoch = dt.datetime(1970, 1, 1)
    span = (now - offset - epoch) // interval
    return np.datetime64(epoch + span * interval, "s")


def next_cycle_start(now: dt.datetime, interval: dt.timedelta, offset: dt.timedelta) -> dt.datetime:
    """The first cycle start (a scan time plus ``offset``) strictly after ``now``."""
    scan = expected_scan(now, interval, offset).astype(dt.datetime)
    return scan + interval + offset


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` inside the block once it has run ``seconds``.

    Uses SIGALRM, so it interrupts Python code between operations (a torch sampling loop stops
    after its current operation). Only in the main thread of a POSIX process; elsewhere, or with
    ``seconds`` None, the block runs unbounded.
    """
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    if seconds <= 0:
        raise DeadlineExceeded(f"{what}: no time left in the cycle's latency budget")

    def _expired(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"{what} ran past its {seconds:.0f} s deadline")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
