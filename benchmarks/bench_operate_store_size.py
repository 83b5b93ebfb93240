"""Whether an operational cycle slows down as its store grows (the store keeps every scan).

    .venv/bin/python benchmarks/bench_operate_store_size.py [--frames 40 8000] [--folder /tmp/operate-size]

For each size, a store of ``frames`` 5-minute frames ending at MeteoSwiss 2016-07-11 22:40 (the
event's 2 km frames up to then, repeated, with the event's grid and attributes), then one
`nowcast operate --once` cycle (default chain, one member) that ingests the four real scans 22:45 to
23:00 and forecasts from 23:00, replayed with ``--now``. Prints the stages' seconds from
``cycles.jsonl`` and writes ``benchmarks/results/operate-store-size.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from data_pipelines import store as zstore
from nowcast.ops.batch import DEFAULT_REAL_EVENT, default_store
from nowcast.types import radar_dir, repo_root

LAST_STORED = np.datetime64("2016-07-11T22:40", "ns")
NEW_SCANS = ("161932245", "161932300")  # yyddd + HHMM range of the scans the cycle ingests


def cycle_seconds(n: int, folder: Path, ref) -> dict[str, float]:
    root = folder / f"store-{n}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "in").mkdir(parents=True)
    past = ref.sel(time=slice(None, LAST_STORED)).load()
    times = LAST_STORED - np.arange(n)[::-1] * np.timedelta64(5, "m")
    frames = past.rain_rate.values[np.resize(np.arange(past.sizes["time"]), n)]
    zstore.create_store(zstore.frames_dataset(frames, times, ref.x.values, ref.y.values,
                                              ref.crs.attrs["crs_wkt"], [f"old{i}" for i in range(n)],
                                              dict(ref.attrs)), root / "store.zarr")
    for f in sorted((radar_dir() / DEFAULT_REAL_EVENT).iterdir()):
        if NEW_SCANS[0] <= f.name[3:12] <= NEW_SCANS[1]:
            shutil.copy(f, root / "in" / f.name)
    folders = {"incoming": "in", "store": "store.zarr", "output": "fc", "state": "state", "quarantine": "q",
               "processed": "p"}
    config = repo_root() / "configs/operate.yaml"
    cmd = [sys.executable, "-m", "nowcast.cli", "operate", "--config", str(config),
           *(x for key, name in folders.items() for x in (f"--{key}", str(root / name))),
           "--coarsen", "2", "--members", "1", "--settle-seconds", "0", "--grace-seconds", "0", "--once",
           "--now", "2016-07-11T23:01:00"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = json.loads((root / "state/cycles.jsonl").read_text().splitlines()[-1])
    if proc.returncode != 0 or line["outcome"] != "written":
        raise SystemExit(f"the cycle on {n} frames did not write a forecast: {line.get('reason')}")
    shutil.rmtree(root)
    return line["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[40, 8000])
    p.add_argument("--folder", type=Path, default=Path("/tmp/operate-size"))
    args = p.parse_args()
    cache = Path(os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast")
    ref = zstore.read_store(default_store(cache))
    stages = ("ingest", "motion", "forecast", "write", "total")
    lines = ["# python benchmarks/bench_operate_store_size.py --frames " + " ".join(map(str, args.frames)),
             "store frames | " + " | ".join(f"{s} (s)" for s in stages)]
    print(lines[1])
    for n in args.frames:
        seconds = cycle_seconds(n, args.folder, ref)
        lines.append(f"{n} | " + " | ".join(f"{seconds.get(s, 0.0):.2f}" for s in stages))
        print(lines[-1], flush=True)
    out = repo_root() / "benchmarks/results/operate-store-size.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
