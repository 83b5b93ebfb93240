"""``nowcast forecast``: the batch nowcast job (its options here; the job is :mod:`nowcast.ops.batch`).

Reads the ``n_in`` frames up to each issue time from a rain store (or from raw radar files
ingested on the fly), runs one forecaster (chosen by registry name, never by type) and
writes one CF forecast file per issue time, plus optional PNG/GIF quicklooks.

The issue time is the valid time of the latest input frame; lead times are 1..n_out store
time steps after it. Without ``--store``/``--input-dir`` the embedded default event is used:
MeteoSwiss 2016-07-11 (summer convection, ingested at 2 km into a cache) when
``../shared/radar`` is present, else the package's synthetic event.

Exit codes: 0 every forecast written; 2 refused before any forecast ran (a bad option, store, model
or --output: one line on stderr); 1 a forecast file or quicklook could not be written (a full disk,
a folder not writable: one line naming it; the files written before it stay, no partial one).
"""

from __future__ import annotations

from typing import Any, Literal

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

from nowcast.cli import EXIT_WRITE_FAILED, command_parser, fail
from nowcast.fsutil import WriteError
from nowcast.ops.inputs import ForecastInputError
from nowcast.types import repo_root

HELP = "run a forecaster from a rain store (or raw files) and write CF netCDF/zarr forecasts"

DEFAULT_CONFIG = repo_root() / "configs" / "forecast.yaml"


def build_parser() -> ArgumentParser:
    p = command_parser(
        "nowcast forecast",
        description=__doc__,
        default_config_files=[str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else [],
    )
    p.add_argument("--config", action=ActionConfigFile,
                   help="YAML file of options (defaults: configs/forecast.yaml); command-line options "
                        "override it")
    src = "Input (at most one of --store/--input-dir; neither = the embedded default event)"
    g = p.add_argument_group(src)
    g.add_argument("--store", type=str | None, default=None,
                   help="rain store (zarr folder or netCDF file) written by `nowcast ingest`")
    g.add_argument("--input-dir", type=str | None, default=None,
                   help="folder of raw radar files, ingested on the fly into a temporary store")
    g.add_argument("--coarsen", type=int, default=1,
                   help="with --input-dir: average NxN pixels on ingest (2 turns 1 km into 2 km)")
    g.add_argument("--crop", type=str | None, default=None,
                   help="forecast a sub-window only: 'y0,x0,h,w' (pixels) or a centred 'size' or 'h,w'")
    t = p.add_argument_group("Issue times (the valid time of the latest input frame, UTC)")
    t.add_argument("--issue-time", type=str, default="latest",
                   help="ISO time (e.g. 2016-07-11T16:00) or 'latest' (the store's last frame)")
    t.add_argument("--start", type=str | None, default=None,
                   help="batch: first issue time (ISO, or 'first' = earliest with enough input frames)")
    t.add_argument("--end", type=str | None, default=None,
                   help="batch: last issue time (ISO or 'latest'); --start/--end override --issue-time")
    t.add_argument("--every", type=int, default=1,
                   help="batch: issue a forecast every N store time steps, counted back from --end when it "
                        "is given (so the last issue time is --end), else forward from --start")
    m = p.add_argument_group("Model")
    m.add_argument("--model", type=str | dict[str, Any], default="extrapolation",
                   help="model spec: a registry name (persistence, extrapolation, steps, diffusion, ...; "
                        "`nowcast models` lists them), 'name:key=value,...' (e.g. steps:ar_order=1, "
                        "diffusion:steps=10,checkpoint=my.pt) or in a config file {name, args, checkpoint}; "
                        "pixel size and time step come from the store, a shipped checkpoint brings the "
                        "settings its model card scored")
    m.add_argument("--members", type=int, default=8,
                   help="ensemble members (deterministic models always give 1)")
    m.add_argument("--n-out", type=int, default=12, help="lead times to forecast (store time steps)")
    m.add_argument("--seed", type=int, default=0,
                   help="seed of the random generator of stochastic models (0 .. 2**64-1); with the issue "
                        "time it seeds each issue time's members")
    m.add_argument("--batch-size", type=int, default=4,
                   help="issue times forecast together in one call by a deterministic model (a stochastic "
                        "one forecasts each issue time alone, its members seeded by --seed and the issue "
                        "time, so that they do not depend on the batch)")
    m.add_argument("--device", type=str, default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    o = p.add_argument_group("Output")
    o.add_argument("--output", type=str, default="outputs/forecasts",
                   help="a .nc/.zarr file (single issue time) or a folder receiving one file per issue time")
    o.add_argument("--format", type=Literal["nc", "zarr"], default="nc",
                   help="file format of the files written into an --output folder")
    o.add_argument("--quicklook", type=Literal["none", "png", "gif", "both"], default="png",
                   help="quicklooks beside each forecast file: png panel, animated gif, both or none")
    o.add_argument("--quicklook-field", type=str, default="mean",
                   help="what quicklooks show: 'mean' (ensemble mean) or 'member<i>' (member0 .. member<M-1> "
                        "of the M members written)")
    o.add_argument("--overwrite", action=ActionYesNo, default=False,
                   help="replace existing forecast files (refused otherwise)")
    o.add_argument("--resume", action=ActionYesNo, default=False,
                   help="continue a batch: skip the issue times whose forecast file and quicklooks are all "
                        "in --output (made by the same model, members and lead times), forecast the others")
    o.add_argument("--cache-dir", type=str | None, default=None,
                   help="where the embedded default store is kept "
                        "(default $NOWCAST_CACHE or ~/.cache/nowcast)")
    return p


# ----------------------------------------------------------------------------- inputs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nowcast.io.cf import ForecastExistsError, OutputPathError
    from nowcast.models.base import DoesNotFitError, ModelArgumentError
    from nowcast.models.checkpoint import CheckpointError
    from nowcast.models.spec import ModelSpecError
    from nowcast.ops.batch import run
    from nowcast.schema import StoreError

    try:
        run(args)
    except (ForecastInputError, ForecastExistsError, StoreError, FileNotFoundError, OutputPathError,
            ModelArgumentError, ModelSpecError, CheckpointError, DoesNotFitError) as err:
        return fail("forecast", err)
    except WriteError as err:
        return fail("forecast", err, EXIT_WRITE_FAILED)
    return 0
