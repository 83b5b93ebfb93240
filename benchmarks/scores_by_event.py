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

from nowcast.evaluation.events import events_of, score_on_windows
from nowcast.evaluation.results import load_run

METRICS = {"CRPS": ("crps",), "CSI 1 mm/h": ("csi", "1.0")}


def main(folder: str, labels: list[str]) -> None:
    run, results = load_run(folder)
    events = events_of(run)
    header = " | ".join(f"{e} ({len(w)} windows) {m}" for e, w in events.items() for m in METRICS)
    print(f"| model | {header} |")
    print("|---" * (1 + len(events) * len(METRICS)) + "|")
    for label in labels or list(results):
        result = results[label]
        cells = []
        for windows in events.values():
            for path in METRICS.values():
                value = score_on_windows(result, path, windows)
                cells.append("–" if value is None else f"{value:.4f}")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
