"""Window index: where in a store ``n_in`` past + ``n_out`` future consecutive frames exist.

A window is ``n_in + n_out`` frames whose times are exactly ``t0, t0 + dt, ..., t0 + (n-1) dt``
with ``dt`` the store's time step (:func:`nowcast.schema.timestep`). A gap (missing frame), a
duplicate time or an off-step time breaks every window that would span it, because such a
window's consecutive differences are not all equal to ``dt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from nowcast.schema import timestep


@dataclass(frozen=True)
class Window:
    """One sample: frames ``start .. start + n_in + n_out - 1`` of store ``store``.

    Times are numpy datetime64[ns]: ``first`` of the first past frame, ``anchor`` of the last
    past frame (the forecast's issue time) and ``end`` of the last future frame.
    """

    store: str
    start: int
    first: np.datetime64
    anchor: np.datetime64
    end: np.datetime64


def valid_starts(times: np.ndarray, step: np.timedelta64, length: int, stride: int = 1) -> np.ndarray:
    """Start indices of all runs of ``length`` frames spaced exactly ``step`` apart.

    Args:
        times: (T,) frame times (datetime64), as stored (sorted or not).
        step: the nominal time step.
        length: frames per window (n_in + n_out), >= 1.
        stride: keep every ``stride``-th start, counted from the start of each unbroken run
            of frames, so a gap does not shift the phase of the next run.

    Returns:
        (N,) int64 indices ``i`` such that ``times[i + k] == times[i] + k * step`` for all k.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"length and stride must be >= 1, got {length}, {stride}")
    times = np.asarray(times, dtype="datetime64[ns]")
    n = len(times)
    if n < length:
        return np.zeros(0, dtype=np.int64)
    ok = np.diff(times) == np.asarray(step, dtype="timedelta64[ns]")  # (T-1,) link i -> i+1 is regular
    # a window starting at i needs links i .. i+length-2 all regular
    bad = np.concatenate([[0], np.cumsum(~ok)])
    starts = np.flatnonzero(bad[length - 1:] - bad[: n - length + 1] == 0)
    if stride > 1 and len(starts):
        # position of each start inside its unbroken run: distance to the last broken link before it
        run_start = np.maximum.accumulate(np.where(np.concatenate([[True], ~ok]), np.arange(n), 0))
        starts = starts[(starts - run_start[starts]) % stride == 0]
    return starts.astype(np.int64)


def store_windows(
    name: str, ds: xr.Dataset, n_in: int, n_out: int, stride: int = 1
) -> list[Window]:
    """All windows of one store (see :func:`valid_starts`)."""
    if n_in < 1 or n_out < 0:
        raise ValueError(f"need n_in >= 1 and n_out >= 0, got {n_in}, {n_out}")
    times = ds["time"].values.astype("datetime64[ns]")
    starts = valid_starts(times, timestep(ds), n_in + n_out, stride)
    return [Window(name, int(i), times[i], times[i + n_in - 1], times[i + n_in + n_out - 1]) for i in starts]


def build_window_index(
    stores: Mapping[str, xr.Dataset], n_in: int, n_out: int, stride: int = 1,
    names: Sequence[str] | None = None,
) -> list[Window]:
    """Windows of several stores, in store order then time order. ``names`` restricts the stores."""
    out: list[Window] = []
    for name in names if names is not None else stores:
        out.extend(store_windows(name, stores[name], n_in, n_out, stride))
    return out
