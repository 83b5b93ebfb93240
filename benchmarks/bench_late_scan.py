"""What a late scan costs the store it is merged into, as the store grows: in place against a whole
rewrite, measured side by side in one run.

    .venv/bin/python benchmarks/bench_late_scan.py [--frames 300 2000 8000] [--folder /tmp/late-scan]

Each store holds ``frames`` 5-minute frames of the default event's 2 km field (320 x 355 px, the
40 frames of MeteoSwiss 2016-07-11 repeated, from the embedded default's cache or ingested on the
fly); one frame three steps before the last arrives late and is merged by
:func:`data_pipelines.store.merge_store` the way ``nowcast ingest`` and every ``nowcast operate``
cycle do: the frames after it rewritten in place (the default), or the whole store rewritten
(``MAX_TAIL_FRAMES = 0``: what a frame later than a day costs), with the store's size on disk.
Prints a table and writes ``benchmarks/results/late-scan.txt``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from data_pipelines import store as zstore
from nowcast.types import repo_root

LATE = 3  # the late frame's place, counted back from the last


def build(folder: Path, n: int, rain: np.ndarray, ref) -> tuple[Path, object]:
    """A store of ``n`` frames without the late one, and the late frame."""
    times = np.datetime64("2021-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(5, "m")
    frames = rain[np.resize(np.arange(len(rain)), n)]
    ds = zstore.frames_dataset(frames, times, ref.x.values, ref.y.values, ref.crs.attrs["crs_wkt"],
                               [f"f{i}" for i in range(n)], {"source": "benchmark"})
    path = folder / f"store-{n}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    keep = np.ones(n, bool)
    keep[n - LATE] = False
    zstore.create_store(ds.isel(time=np.flatnonzero(keep)), path)
    return path, ds.isel(time=[n - LATE])


def merge_seconds(path: Path, late, max_tail: int) -> float:
    zstore.MAX_TAIL_FRAMES = max_tail
    t0 = time.perf_counter()
    with zstore.locked_store(path):
        zstore.merge_store(late, path)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[300, 2000, 8000])
    p.add_argument("--folder", type=Path, default=Path("/tmp/late-scan"))
    args = p.parse_args()
    import os

    from nowcast.ops.batch import default_store

    cache = Path(os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast")
    ref = zstore.read_store(default_store(cache))
    rain = ref.rain_rate.values
    args.folder.mkdir(parents=True, exist_ok=True)
    default = zstore.MAX_TAIL_FRAMES
    lines = ["# python benchmarks/bench_late_scan.py --frames " + " ".join(map(str, args.frames)),
             f"store frames | store size (MB) | in place (s) | whole rewrite (s) | ratio   "
             f"(one late frame {LATE} steps before the last; {rain.shape[1]}x{rain.shape[2]} px)"]
    print(lines[1])
    for n in args.frames:
        path, late = build(args.folder, n, rain, ref)
        in_place = merge_seconds(path, late, default)
        path, late = build(args.folder, n, rain, ref)
        whole = merge_seconds(path, late, 0)
        megabytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        shutil.rmtree(path)
        lines.append(f"{n} | {megabytes:.0f} | {in_place:.2f} | {whole:.2f} | {whole / in_place:.0f}x")
        print(lines[-1], flush=True)
    zstore.MAX_TAIL_FRAMES = default
    out = repo_root() / "benchmarks/results/late-scan.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
