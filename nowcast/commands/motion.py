"""``nowcast motion``: build the motion caches (``<store>.motion.zarr``) for the windows of a data
config's splits, or of one store's time range.

    nowcast motion --data configs/data/radar-mix.yaml --splits train val test
    nowcast motion --store stores/x.zarr --start 2021-02-02T20:00 --end 2021-02-02T23:00

One pysteps optical flow per window anchor (the last past frame), on the store's full field
(:func:`nowcast.data.motion_cache.build_motion_cache`). The caches let training and
``nowcast evaluate --motion cache`` run where pysteps is not installed (the GPU machine) and
give every model of an evaluation the same motion. Resumable: anchors already cached are
skipped, new ones are appended in small batches. One build per cache at a time: a second is
refused (exit 2).
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from jsonargparse import ActionYesNo, ArgumentParser

from nowcast.cli import command_parser

HELP = "build the motion caches (pysteps optical flow per window) that training and evaluation can use"

log = logging.getLogger("nowcast.motion")


def build_parser() -> ArgumentParser:
    p = command_parser("nowcast motion", description=__doc__)
    p.add_argument("--data", type=str | None, default="configs/data/radar-mix.yaml",
                   help="data config whose splits' windows get motion")
    p.add_argument("--splits", type=str, nargs="+", default=["train", "val", "test"], help="splits to cover")
    p.add_argument("--store", type=str | None, default=None, help="one store instead of --data")
    p.add_argument("--start", type=str | None, default=None, help="with --store: first frame (ISO, UTC)")
    p.add_argument("--end", type=str | None, default=None, help="with --store: last frame (ISO, UTC)")
    p.add_argument("--n-in", type=int | None, default=None, help="past frames per window (config's)")
    p.add_argument("--n-out", type=int | None, default=None, help="future frames per window")
    p.add_argument("--coarsen", type=int, default=4, help="block size the fields are stored at")
    p.add_argument("--method", type=str, default="LK", help="pysteps.motion method")
    p.add_argument("--progress", action=ActionYesNo, default=True, help="progress bars")
    return p


def anchors_by_store(args: Any) -> tuple[dict[str, Path], dict[str, set[Any]], int]:
    """Store paths, the anchor times per store of the chosen windows, and ``n_in``."""
    from nowcast.data.datamodule import NowcastDataModule, load_config, store_range_config

    frames = {k: v for k, v in (("n_in", args.n_in), ("n_out", args.n_out)) if v is not None}
    if args.store:
        cfg, splits = store_range_config(args.store, args.start, args.end, "motion"), ["motion"]
    else:
        if args.start or args.end:
            raise ValueError("--start/--end select frames of --store; with --data use --splits")
        cfg, splits = load_config(args.data), list(args.splits)
    dm = NowcastDataModule(**{**cfg, **frames, "num_workers": 0})
    unknown = sorted(set(splits) - set(dm.events))
    if unknown:
        raise ValueError(f"splits {unknown} are not in the data config; it has {sorted(dm.events)}")
    dm.setup("fit")
    anchors: dict[str, set[Any]] = defaultdict(set)
    for split in splits:
        for w in dm.windows.get(split, []):
            anchors[w.store].add(w.anchor)
    return dm.store_paths, anchors, dm.n_in


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    import numpy as np

    from nowcast.data.motion_cache import build_motion_cache
    from nowcast.fsutil import LockedError

    logging.getLogger("nowcast").setLevel(logging.INFO)
    try:
        paths, anchors, n_in = anchors_by_store(args)
        if not anchors:
            raise ValueError("the chosen splits hold no windows")
        for store, times in sorted(anchors.items()):
            wanted = np.array(sorted(times), dtype="datetime64[ns]")
            out = build_motion_cache(paths[store], n_in=n_in, coarsen=args.coarsen, times=wanted,
                                     method=args.method, progress=args.progress)
            log.info("%s: motion of %d window anchors in %s", store, len(wanted), out)
    except (ValueError, FileNotFoundError, LockedError) as err:  # LockedError: another build writes a cache
        print(f"nowcast motion: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0
