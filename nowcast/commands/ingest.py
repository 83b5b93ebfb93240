"""``nowcast ingest``: raw radar files or folders -> CF rain-rate zarr store (or a config's set of stores).

Examples::

    nowcast ingest ../shared/radar/pysteps/mch --store stores/mch.zarr --coarsen 2
    nowcast ingest --config configs/ingest/radar-mix.yaml          # the benchmark's stores
    nowcast ingest --config configs/ingest/radar-mix.yaml --include-optional true   # + BOM
    nowcast ingest new_files/ --store stores/mch.zarr --netcdf stores/mch.nc
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

HELP = "ingest raw radar files (KNMI, FMI, MeteoSwiss, ODIM, BOM) into a CF rain-rate zarr store"

log = logging.getLogger(__name__)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="nowcast ingest", description=HELP + ". " + (
        "Rain rate in mm/h (dBZ via Z = a R^b, accumulations divided by their accumulation time, "
        "< 0.1 mm/h -> 0, NaN outside coverage; KNMI files are converted by their own metadata, grids "
        "in km are stored in metres, the time step is measured from the frames' times). Incremental and "
        "idempotent: only new times are added, re-ingesting a file changes nothing, unreadable files, "
        "files on another grid and frames with impossible rain values (inf, negative, above "
        "--max-rain-rate) are reported and skipped. One writer per store: a store that another "
        "process is writing is refused (exit status 2); a run killed at any moment leaves the store "
        "as it was before its last write, and the next run recovers it. Exit status 1 if any file "
        "was skipped."))
    p.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    p.add_argument("inputs", nargs="*", type=str, default=[],
                   help="raw radar files and/or folders (searched recursively for known file names)")
    p.add_argument("--store", type=str | None, default=None,
                   help="zarr store to create or extend (a folder, e.g. stores/knmi.zarr)")
    p.add_argument("--source", type=str | None, default=None,
                   help="radar source name (knmi, fmi, mch, rmi, bom, odim); default: detect from file names")
    p.add_argument("--coarsen", type=int, default=1,
                   help="average rain rates over coarsen x coarsen pixel blocks (2: 1 km -> 2 km)")
    p.add_argument("--zr-a", "--zr_a", type=float, default=200.0,
                   help="Z-R relation Z = a R^b: a (Marshall-Palmer 200)")
    p.add_argument("--zr-b", "--zr_b", type=float, default=1.6,
                   help="Z-R relation Z = a R^b: b (Marshall-Palmer 1.6)")
    p.add_argument("--max-rain-rate", "--max_rain_rate", type=float, default=500.0,
                   help="ceiling of a believable rain rate in mm/h: a frame above it is a wrong conversion "
                        "and is skipped (evaluation checks stores against it too)")
    p.add_argument("--stores", type=dict | None, default=None,
                   help="build a set of stores instead, {name: {source, folders[, optional]}} with folders "
                        "relative to --radar-root (see configs/ingest/radar-mix.yaml)")
    p.add_argument("--out", type=str, default="stores", help="output folder of --stores")
    p.add_argument("--radar-root", "--radar_root", type=str | None, default=None,
                   help="raw data root for --stores (default: $NOWCAST_SHARED/radar or ../shared/radar)")
    p.add_argument("--include-optional", "--include_optional", type=bool, default=False,
                   help="with --stores: also build the stores marked optional")
    p.add_argument("--netcdf", type=str | None, default=None,
                   help="after ingesting, also export the store to this netCDF4 file (with --store)")
    p.add_argument("--progress", type=bool | None, default=None,
                   help="show a progress bar (default: when ingesting 50 files or more)")
    return p


def main(argv: list[str]) -> int:
    cfg = build_parser().parse_args(argv)
    from data_pipelines.ingest import StoreSpec, build_stores, ingest_files
    from data_pipelines.sources import find_files, get_source
    from data_pipelines.store import export_netcdf
    from nowcast.fsutil import LockedError
    from nowcast.schema import StoreError

    if cfg.stores:
        try:
            stores = [StoreSpec.from_config(name, dict(entry)) for name, entry in cfg.stores.items()]
            built = build_stores(stores, cfg.out, Path(cfg.radar_root) if cfg.radar_root else None,
                                 coarsen=cfg.coarsen, zr=(cfg.zr_a, cfg.zr_b),
                                 max_rain_mm_h=cfg.max_rain_rate, include_optional=cfg.include_optional,
                                 progress=cfg.progress)
        except (LockedError, ValueError, KeyError) as exc:
            print(f"nowcast ingest: {exc}", file=sys.stderr)
            return 2
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"nowcast ingest: {exc}", file=sys.stderr)
            return 1
        for name, path in built.items():
            print(f"{name}: {path}")
        return 0

    if not cfg.inputs or not cfg.store:
        print("nowcast ingest: give input files/folders and --store (or --config with stores); see --help",
              file=sys.stderr)
        return 2
    spec = get_source(cfg.source) if cfg.source else None
    files: list[Path] = []
    for item in map(Path, cfg.inputs):
        if item.is_dir():
            files += find_files(item, spec)
        elif item.exists():
            files.append(item)
        else:
            print(f"nowcast ingest: input not found: {item}", file=sys.stderr)
            return 2
    if not files:
        print(f"nowcast ingest: no radar files found in {cfg.inputs}", file=sys.stderr)
        return 2
    try:
        report = ingest_files(files, cfg.store, source=cfg.source, coarsen=cfg.coarsen,
                              zr=(cfg.zr_a, cfg.zr_b), progress=cfg.progress, max_rain_mm_h=cfg.max_rain_rate)
    except (LockedError, StoreError) as exc:  # StoreError: a store it must not write into
        print(f"nowcast ingest: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if cfg.netcdf and report.n_frames:
        print(f"exported {export_netcdf(cfg.store, cfg.netcdf)}")
    return 0 if report.ok else 1
