"""A report's CRPS and CSI at 1 mm/h per event: which event a split's mean score comes from.

    python benchmarks/scores_by_event.py reports/radar-mix-test [label ...]

A split's pooled CRPS is a mean over pixels, so an event with intense rain (CRPS per pixel ten
times another's) sets it almost alone. Each event's scores are pooled over its own windows as the
report pools the split's (mean over lead times of the pooled score), from the per-window sums;
a window belongs to the event of the report's data description whose store and time range hold
its issue time. No label: every model.
"""

from __future__ import annotations

import sys

import numpy as np
from summarise_report import on_windows

from nowcast.evaluation.results import load_run

METRICS = {"CRPS": ("crps",), "CSI 1 mm/h": ("csi", "1.0")}


def events_of(run: dict) -> dict[str, list[int]]:
    """Event name ("mch 2016-07-11", its store and first day) -> the report's window indices issued
    in it, by the event's time range in the report's data description (an event may pass midnight)."""
    ranges = []
    for event in run["data"].get("events", []):
        head, end = event.split(" .. ")
        store, start = head.split(" ")
        ranges.append((f"{store} {start[:10]}", store, np.datetime64(start), np.datetime64(end)))
    events: dict[str, list[int]] = {}
    for index, window in zip(run["window_indices"], run["windows"], strict=True):
        store, issued = window.split(" ")
        t = np.datetime64(issued)
        name = next((n for n, s, a, b in ranges if s == store and a <= t <= b), f"{store} {issued[:10]}")
        events.setdefault(name, []).append(int(index))
    return events


def main(folder: str, labels: list[str]) -> None:
    run, results = load_run(folder)
    events = events_of(run)
    header = " | ".join(f"{e} ({len(w)} windows) {m}" for e, w in events.items() for m in METRICS)
    print(f"| model | {header} |")
    print("|---" * (1 + len(events) * len(METRICS)) + "|")
    for label in labels or list(results):
        result = results[label]
        done = set(result.get("window_indices") or [])
        cells = []
        for windows in events.values():
            for path in METRICS.values():
                value = on_windows(result, path, windows) if set(windows) <= done else None
                cells.append("–" if value is None else f"{value:.4f}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
