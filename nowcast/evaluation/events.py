"""Scores per event: which event a split's pooled score comes from.

A split's pooled scores are means over pixels, so an event with intense rain (a CRPS per pixel ten
times another's) can set a split's CRPS almost alone. Here each event's scores are pooled over its
own windows exactly as the report pools the split's (from the per-window sums), and a window
belongs to the event of the run's data description whose store and time range hold its issue time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nowcast.evaluation.findings import window_pooled


def events_of(run: Mapping[str, Any]) -> dict[str, list[int]]:
    """Event name (its store and first day, e.g. "mch 2016-07-11") -> the run's window indices
    issued in it, by the events' time ranges in ``run["data"]["events"]`` (an event may pass
    midnight); a window outside every listed event is named by its store and issue day."""
    ranges = []
    for event in run.get("data", {}).get("events", []):
        head, end = event.split(" .. ")
        store, start = head.split(" ")
        ranges.append((f"{store} {start[:10]}", store, np.datetime64(start), np.datetime64(end)))
    events: dict[str, list[int]] = {}
    for index, window in zip(run.get("window_indices", []), run.get("windows", []), strict=True):
        store, issued = window.split(" ")
        t = np.datetime64(issued)
        name = next((n for n, s, a, b in ranges if s == store and a <= t <= b), f"{store} {issued[:10]}")
        events.setdefault(name, []).append(int(index))
    return events


def score_on_windows(result: Mapping[str, Any], path: Sequence[str], windows: Sequence[int]) -> float | None:
    """``result``'s pooled score ``path`` (e.g. ``("csi", "1.0")``, ``("crps",)``) over ``windows``
    only, mean over lead times; None without per-window sums or where ``result`` lacks a window."""
    pooled = window_pooled(result, path)
    if pooled is None:
        return None
    rows = {w: i for i, w in enumerate(pooled[0])}
    if not windows or any(w not in rows for w in windows):
        return None
    return pooled[1].subset([rows[w] for w in windows]).value()
