"""Ingest throughput (frames/s) and store size vs raw size on real events of ../shared/radar.

    .venv/bin/python benchmarks/bench_ingest.py [--coarsen 1 2] [--out benchmarks/results/ingest.json]

Each event is ingested into a fresh zarr store in a temporary folder; the time covers reading,
conversion and writing (pysteps import warmed up first). Prints a table and writes a JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

from data_pipelines.ingest import ingest_files
from data_pipelines.sources import find_files, get_source
from nowcast.types import radar_dir

#: (label, source, folder relative to the radar root)
EVENTS = (
    ("KNMI 2021-02-02", "knmi", "knmi_2021/2021-02-02-2005"),
    ("FMI 2016-09-28", "fmi", "pysteps/fmi/pgm/20160928"),
    ("MCH 2016-07-11", "mch", "pysteps/mch/20160711"),
    ("RMI 2021-07-04", "rmi", "pysteps/rmi/radqpe/20210704"),
    ("BOM 2018-06-16", "bom", "pysteps/bom/prcp-cscn/2/2018/06/16"),
)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(coarsens: list[int], root: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = find_files(root / EVENTS[2][2], get_source(EVENTS[2][1]))[:1]
        ingest_files(warm, Path(tmp) / "warm.zarr", progress=False)  # import pysteps, pyproj once
        for label, source, folder in EVENTS:
            files = find_files(root / folder, get_source(source))
            raw = sum(f.stat().st_size for f in files)
            for c in coarsens:
                store = Path(tmp) / f"{source}-{c}.zarr"
                t0 = time.perf_counter()
                report = ingest_files(files, store, source=source, coarsen=c, progress=False)
                dt = time.perf_counter() - t0
                size = folder_bytes(store)
                rows.append({"event": label, "source": source, "coarsen": c, "frames": report.n_frames,
                             "skipped": len(report.skipped), "seconds": round(dt, 2),
                             "frames_per_s": round(report.n_frames / dt, 1), "raw_mb": round(raw / 1e6, 2),
                             "store_mb": round(size / 1e6, 2), "store_over_raw": round(size / raw, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coarsen", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ingest.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = radar_dir()
    if not root.is_dir():
        raise SystemExit(f"real radar data not found at {root} (set NOWCAST_SHARED)")
    rows = run(args.coarsen, root)
    print(f"{'event':<17}{'coarsen':>8}{'frames':>8}{'s':>8}{'frames/s':>10}"
          f"{'raw MB':>9}{'store MB':>10}{'ratio':>8}")
    for r in rows:
        print(f"{r['event']:<17}{r['coarsen']:>8}{r['frames']:>8}{r['seconds']:>8.2f}{r['frames_per_s']:>10.1f}"
              f"{r['raw_mb']:>9.2f}{r['store_mb']:>10.2f}{r['store_over_raw']:>8.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "ingest", "machine": platform.platform(),
                                    "processor": platform.processor(), "rows": rows}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
