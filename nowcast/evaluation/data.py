"""The windows an evaluation scores: a data config's split or a store's time range, checked.

:func:`build_data` gives the dataset (fixed centred crop, cached motion when asked) and its
description; :func:`describe_stores` and :func:`check_one_grid` describe the stores used and
refuse a run that mixes time steps or pixel sizes. Every refusal is an :class:`EvaluateInputError`
with one line that says what to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EvaluateInputError(ValueError):
    """Inconsistent options, unusable data or an output folder that holds another run."""


def build_data(args: Any) -> tuple[Any, dict[str, Any]]:
    """The split's dataset (fixed centred crop) and a description: stores, events, window count."""
    from nowcast.data.datamodule import NowcastDataModule, load_config, store_range_config
    from nowcast.models.base import refuse_unknown_arguments

    overrides: dict[str, Any] = {k: v for k, v in (("n_in", args.n_in), ("n_out", args.n_out),
                                                   ("stride", args.stride)) if v is not None}
    if args.crop is not None:
        overrides["eval_crop_size"] = args.crop or None
    if args.store:
        cfg: dict[str, Any] = {**store_range_config(args.store, args.start, args.end, "evaluate"),
                               "eval_crop_size": 256}
        where = f"store {Path(args.store).resolve()} {args.start or 'start'} .. {args.end or 'end'}"
        split = "evaluate"
    else:
        if args.start or args.end:
            raise EvaluateInputError("--start/--end select frames of --store; with --data use --split")
        if not args.data:
            raise EvaluateInputError("give --data (a data config) or --store")
        cfg, split = load_config(args.data), args.split
        where = f"split {split!r} of {args.data}"
    cached = args.motion == "cache"
    source = f"data config {args.data}" if not args.store else f"--store {args.store}"
    try:
        refuse_unknown_arguments(NowcastDataModule, cfg, what=source, noun="key")
    except ValueError as err:
        raise EvaluateInputError(str(err)) from err
    try:
        dm = NowcastDataModule(**{**cfg, **overrides, "num_workers": 0, "with_motion": cached,
                                  "cached_motion_only": False})
    except (ValueError, KeyError) as err:  # overlapping splits, unknown stores, bad times
        raise EvaluateInputError(f"{source}: {err.args[0] if isinstance(err, KeyError) else err}") from err
    if split not in dm.events:
        raise EvaluateInputError(f"split {split!r} not in the data config; it has {sorted(dm.events)}")
    dm.setup("test")
    if not len(dm.datasets.get(split, ())):
        have = {k: len(v) for k, v in dm.datasets.items()}
        raise EvaluateInputError(
            f"{where} has no windows of {dm.n_in} + {dm.n_out} frames every {dm.stride} step(s) "
            f"(windows per split: {have}); check its times against the stores' frames, "
            "or lower --n-in/--n-out")
    dataset = dm.scoring_dataset(split)
    missing = dm.without_cached_motion(dataset.windows) if cached else []
    if missing:
        raise EvaluateInputError(
            f"--motion cache: {len(missing)} of {len(dataset)} windows ({where}) have no cached motion, "
            f"e.g. {missing[0].store} {missing[0].anchor}; build it with `nowcast motion` "
            f"(--data ... --splits {split}, or --store ... --start ... --end ...)")
    return dataset, {"where": where, "split": split, "motion": args.motion,
                     "events": [str(e) for e in dm.events[split]],
                     "store_paths": {k: str(v) for k, v in dm.store_paths.items()},
                     "n_in": dm.n_in, "n_out": dm.n_out, "crop": dm.eval_crop_size,
                     "stores_used": sorted({w.store for w in dataset.windows})}


def describe_stores(paths: dict[str, str]) -> dict[str, Any]:
    import numpy as np

    from nowcast.data.store import describe_store, open_store
    from nowcast.schema import RainValueError, timestep

    out = {}
    for name, path in paths.items():
        try:
            ds = open_store(path, check_values=True)
        except RainValueError as err:  # a wrong conversion is not scored: one line, exit 2
            raise EvaluateInputError(str(err)) from err
        out[name] = {"path": path, **describe_store(ds)}
        if out[name]["timestep_minutes"] is None:  # a store without the attribute: its frames' step
            out[name]["timestep_minutes"] = timestep(ds) / np.timedelta64(1, "m")
        ds.close()
    return out


def check_one_grid(stores: dict[str, dict[str, Any]]) -> None:
    """Refuse stores of different time steps or pixel sizes in one run: scores per lead time, the
    spectra and the models' binding (:func:`nowcast.models.base.bind_to_store`) assume one of each."""
    def differ(key: str) -> bool:
        values = [float(s[key]) for s in stores.values()]
        return any(abs(v - values[0]) > 0.01 * abs(values[0]) for v in values)

    if differ("timestep_minutes") or differ("pixel_size_m"):
        each = "; ".join(f"{name} {s['timestep_minutes']:g} min, {s['pixel_size_m']:g} m"
                         for name, s in stores.items())
        raise EvaluateInputError(f"the stores of this run differ in time step or pixel size ({each}); "
                                 "evaluate each kind in its own run")
