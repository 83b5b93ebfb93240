"""The report's CSV tables: every score per model, metric, variant and lead time; the spectra."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nowcast.evaluation.plots import lookup
from nowcast.fsutil import atomic_write


def series_rows(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float]) -> list[list[Any]]:
    """Every per-lead/mean score as rows [model, metric, variant, lead_min, value]."""
    rows: list[list[Any]] = []

    def walk(label: str, node: Any, path: list[str]) -> None:
        if not isinstance(node, Mapping) or (path and path[0] == "rapsd"):
            return
        if "mean" in node and "per_lead" in node:
            variant = "/".join(path[1:])
            rows.extend([label, path[0], variant, lead_minutes[i], v]
                        for i, v in enumerate(node["per_lead"] or []))
            rows.append([label, path[0], variant, "mean", node["mean"]])
            return
        for key, child in node.items():
            walk(label, child, [*path, key])

    for label, res in results.items():
        walk(label, res.get("scores", {}), [])
    return rows


def csv_cell(value: Any) -> Any:
    """One CSV cell: None empty, floats to 6 significant digits (metrics.json keeps every digit;
    the report's CSVs are for reading and spreadsheets, and full float reprs doubled their size)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(header)
    w.writerows([[csv_cell(v) for v in r] for r in rows])
    atomic_write(path, text.getvalue())


def spectra_rows(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float]) -> list[list[Any]]:
    rows = []
    for label, res in results.items():
        spec = lookup(res.get("scores", {}), ("rapsd",))
        if not spec:
            continue
        for i, (fc, ob) in enumerate(zip(spec["forecast"], spec["observed"], strict=True)):
            rows += [[label, lead_minutes[i], wl, fq, f, o]
                     for wl, fq, f, o in zip(spec["wavelength_km"], spec["freq_per_km"], fc, ob, strict=True)]
    return rows
