"""Loader throughput (windows/s) on the radar-mix stores: training crops with and without motion,
and evaluation windows (fixed 256x256 crop). Prints a table and writes benchmarks/results/loader.json.

    .venv/bin/python benchmarks/bench_loader.py [--config configs/data/radar-mix.yaml] [--n 64]

Motion comes from the motion caches where built (``build_motion_cache``); stores without a cache
compute it on the fly with pysteps (much slower: reported separately).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nowcast.data.datamodule import from_config
from nowcast.data.motion_cache import motion_cache_path


def _rate(loader, n_windows: int) -> float:
    t0, seen = time.perf_counter(), 0
    for batch in loader:
        seen += batch["past"].shape[0]
        if seen >= n_windows:
            break
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/data/radar-mix.yaml")
    ap.add_argument("--n", type=int, default=64, help="windows per measurement")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/loader.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    base = dict(num_workers=args.num_workers, batch_size=8, samples_per_epoch=args.n)
    plain = from_config(args.config, **base)
    plain.setup()
    cached = [s for s, p in plain.store_paths.items() if motion_cache_path(p).exists()]
    cases = [("train 128 crop", plain, "train")]
    if cached:  # train on the stores whose motion is cached, so no pysteps runs in the loop
        cfg = {**base, "with_motion": True}
        motion = from_config(args.config, **cfg)
        motion.events = {k: [e for e in v if e.store in cached] for k, v in motion.events.items()}
        motion.setup()
        cases.append((f"train 128 crop + cached motion ({','.join(cached)})", motion, "train"))
    cases.append(("eval 256 crop", plain, "val"))
    for name, dm, split in cases:
        loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
        _rate(loader, 8)  # warm-up: open stores, start workers
        rate = _rate(dm.train_dataloader() if split == "train" else dm.val_dataloader(), args.n)
        rows.append({"case": name, "windows_per_s": round(rate, 1), "num_workers": args.num_workers})
        print(f"{name:<60s} {rate:8.1f} windows/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "machine": platform.node(), "cpu_threads": 1,
                               "note": "2 CPU cores shared with other jobs", "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
