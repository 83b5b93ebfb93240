"""``--ckpt_path last``: the training state of this configuration's last run, never another's.

Lightning's own ``ckpt_path="last"`` looks only in the new run's checkpoint folder, which for a
logged run is a new ``lightning_logs/version_N``: it never finds the killed run's state and silently
starts over. So ``nowcast train`` looks for ``last*.ckpt`` anywhere under
``trainer.default_root_dir``. Several configurations may share that folder (the diffusion recipes
both write under ``runs/diffusion``, and so do their ablations' overrides), so a state is resumed
only if it was saved by the same model class with the same settings: Lightning keeps both in the
checkpoint (``hyper_parameters``, with ``_class_path`` when the CLI built the model). The newest
such state is resumed; a newer one of another configuration is passed over, and when there is
none of this configuration the run is refused, naming the newest state and what differs.

``validate``, ``test`` and ``predict`` take ``--ckpt_path last`` by the same rule; without any
state they are refused, where a fit starts from the beginning (they would score untrained weights).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nowcast.training.refusal import TrainingInputError

log = logging.getLogger(__name__)

#: saved hyperparameters that say how the model was built, not what it is
IGNORED_HPARAMS = ("_instantiator",)
#: the hyperparameter under which LightningCLI saves the model's class
CLASS_KEY = "_class_path"
#: differences named in a refusal (the rest are counted)
SHOWN_DIFFERENCES = 4


def last_checkpoints(root: str | Path) -> list[Path]:
    """Every ``last*.ckpt`` under ``root``, newest first."""
    found = [p for p in Path(root).rglob("last*.ckpt") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def model_settings(hparams: Mapping[str, Any], model_class: type) -> dict[str, Any]:
    """A model's ``hparams`` as they are compared with a checkpoint's: with its class (which
    LightningCLI saves under :data:`CLASS_KEY`), without :data:`IGNORED_HPARAMS`."""
    settings = {k: v for k, v in hparams.items() if k not in IGNORED_HPARAMS}
    settings.setdefault(CLASS_KEY, f"{model_class.__module__}.{model_class.__qualname__}")
    return settings


def saved_settings(path: Path) -> dict[str, Any]:
    """The model settings Lightning saved in the checkpoint ``path`` (``hyper_parameters``), read
    without loading its weights into memory; ``OSError`` if the file cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated by a kill, not a checkpoint, pickled code: not resumable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OSError(f"cannot be read ({reason})") from err
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return {k: v for k, v in (hparams or {}).items() if k not in IGNORED_HPARAMS}


def flattened(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``model.args.dim``)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def hparam_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each setting in which a checkpoint's ``saved`` settings differ from the ``current`` ones, as
    "<setting> <saved> in the checkpoint, <current> in this config" (the class first)."""
    old, new = flattened(saved), flattened(current)
    keys = sorted(set(old) | set(new), key=lambda k: (k != CLASS_KEY, k))
    missing = "(not set)"
    return [f"{'model class' if k == CLASS_KEY else k} {old.get(k, missing)!r} in the checkpoint, "
            f"{new.get(k, missing)!r} in this config"
            for k in keys if old.get(k, missing) != new.get(k, missing)]


def checkpoint_differences(path: Path, current: Mapping[str, Any]) -> list[str]:
    """Why the training state ``path`` is not this configuration's (empty: it is)."""
    try:
        return hparam_differences(saved_settings(path), current)
    except OSError as err:
        return [str(err)]


def summary(differences: list[str]) -> str:
    """The first :data:`SHOWN_DIFFERENCES` differences, and how many more there are."""
    shown = "; ".join(differences[:SHOWN_DIFFERENCES])
    more = len(differences) - SHOWN_DIFFERENCES
    return shown + (f"; and {more} more" if more > 0 else "")


def matching_last_checkpoint(root: str | Path, current: Mapping[str, Any],
                             fix: str) -> Path | None:
    """The newest ``last*.ckpt`` under ``root`` saved by the ``current`` settings
    (:func:`model_settings`); None when there is no ``last*.ckpt`` at all. Newer ones of another
    configuration are logged and passed over; when none matches, :class:`TrainingInputError`
    names the newest and what differs, then ``fix`` (how to proceed)."""
    candidates = last_checkpoints(root)
    newest: tuple[Path, list[str]] | None = None
    for path in candidates:
        differences = checkpoint_differences(path, current)
        if not differences:
            return path
        log.info("--ckpt_path last: passing over %s, saved by another configuration (%s)",
                 path, summary(differences))
        newest = newest or (path, differences)
    if newest is None:
        return None
    raise TrainingInputError(
        f"--ckpt_path last: none of the {len(candidates)} last*.ckpt under {root} was saved by this "
        f"configuration; the newest, {newest[0]}, differs: {summary(newest[1])}; {fix}")


#: how a fit goes on when no state of its configuration is found
FIT_FIX = ("give this run its own --trainer.default_root_dir, or drop --ckpt_path last to start from "
           "the beginning")
#: the same for the subcommands that use a state (validate, test, predict)
SCORING_FIX = ("give the --trainer.default_root_dir of the fit whose state to use, or its checkpoint "
               "as --ckpt_path FILE")


def resolve_last(config: dict[str, Any], root: str | Path, hparams: Mapping[str, Any],
                 model_class: type, subcommand: str = "fit") -> None:
    """Replace ``ckpt_path: last`` in a ``subcommand``'s ``config`` by the training state it means
    (:func:`matching_last_checkpoint` of the model's ``hparams`` and ``model_class``). Without any
    ``last*.ckpt`` under ``root`` a fit starts from the beginning (said in the log); validate, test
    and predict, which would score untrained weights, are refused (:class:`TrainingInputError`)."""
    if config.get("ckpt_path") != "last":
        return
    fix = FIT_FIX if subcommand == "fit" else SCORING_FIX
    found = matching_last_checkpoint(root, model_settings(hparams, model_class), fix)
    if found is None and subcommand != "fit":
        raise TrainingInputError(f"--ckpt_path last: no last*.ckpt under {root}, so nothing to "
                                 f"{subcommand} but untrained weights; {fix}")
    if found is None:
        log.warning("--ckpt_path last: no last.ckpt under %s, so training starts from the beginning", root)
    else:
        log.info("--ckpt_path last: %s %s", "resuming" if subcommand == "fit" else "loading", found)
    config["ckpt_path"] = None if found is None else str(found)
