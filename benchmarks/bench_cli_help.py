"""How fast the command line answers: `nowcast --help`, `--version` and each subcommand's `--help`,
as a user types them (a fresh process each time, the median of a few runs).

    .venv/bin/python benchmarks/bench_cli_help.py [--repeats 5] [--out benchmarks/results/cli_help.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nowcast.cli import COMMANDS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/cli_help.json")
    args = ap.parse_args()
    exe = shutil.which("nowcast", path=str(Path(sys.executable).parent)) or "nowcast"
    cases = [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS), ["train", "fit", "--help"]]
    rows = {}
    for argv in cases:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([exe, *argv], capture_output=True, check=True, env=os.environ)
            times.append(time.perf_counter() - t0)
        rows[" ".join(["nowcast", *argv])] = round(statistics.median(times), 3)
        print(f"  {'nowcast ' + ' '.join(argv):28s} {rows['nowcast ' + ' '.join(argv)]:6.2f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"median_s": rows, "repeats": args.repeats}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
