"""Checkpoints that carry what they were built for, load with ``weights_only=True`` and refuse
a setup they do not fit.

A checkpoint is a plain dict (only tensors, numbers, strings, lists and dicts, so that
``torch.load(..., weights_only=True)`` reads it)::

    {
      "format": "nowcast-checkpoint/1",
      "forecaster": "diffusion",           # registry name
      "hparams": {...},                    # network/forecaster constructor arguments
      "transform": {"name": "dbz", ...},   # nowcast.data.transforms
      "window": {"n_in": 4, "n_out": 12, "timestep_minutes": 5.0},
      "grid": {"pixel_size_m": 2000.0, "height": null, "width": null},
      "data": {...},                       # stores, split, crops: a description of the data
      "metrics": {...},                    # validation scores at save time
      "state_dict": {...},                 # one or more module state dicts
    }
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from nowcast.fsutil import atomic_write
from nowcast.types import GridSpec, WindowSpec

FORMAT = "nowcast-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint's path."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint built for another frame count, time step, grid, transform or model."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (see module docstring) atomically: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = {"forecaster", "hparams", "transform", "window", "grid", "state_dict"} - set(payload)
    if missing:
        raise ValueError(f"checkpoint payload lacks {sorted(missing)}")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    atomic_write(path, buffer.getvalue())  # fsynced; a failed write leaves the old file and no temporary
    return path


def load_checkpoint(path: str | Path, forecaster: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; check its format and forecaster name.

    Raises :class:`CheckpointNotFoundError`, :class:`CheckpointError` (unreadable, or pickled
    code, which ``weights_only`` refuses to run) or :class:`CheckpointMismatchError` (another model).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path} (give the path of a nowcast checkpoint, "
                                      "or none for the model's shipped one)")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch's zip format nor a pickle
        raise _unreadable(path, ValueError(f"it starts with {head!r}" if head else "it is empty"))
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():  # a broken pickle, not a refused one
            raise _unreadable(path, err) from err
        code = re.search(r"GLOBAL (\S+)", str(err))
        what = f"code ({code.group(1)})" if code else "objects other than plain weights"
        raise CheckpointError(f"checkpoint {path} holds pickled {what}, refused: unpickling it could run "
                              "code; use a checkpoint written by nowcast (nowcast train)") from err
    except Exception as err:  # truncated or foreign files: zip, EOF and unpickler errors of all kinds
        raise _unreadable(path, err) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not a nowcast checkpoint ({FORMAT}); "
                                      "use a checkpoint written by nowcast (nowcast train)")
    if forecaster is not None and ckpt["forecaster"] != forecaster:
        raise CheckpointMismatchError(
            f"{path} holds a {ckpt['forecaster']!r} model, not {forecaster!r}; "
            f"load it as {ckpt['forecaster']!r} or give a {forecaster!r} checkpoint"
        )
    return ckpt


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    reason = str(err).split(". ")[0].strip() or f"{type(err).__name__}: the file ends early"
    return CheckpointError(f"checkpoint {path} cannot be read, it is truncated or not a torch file "
                           f"({reason}); copy it again or re-export it")


def check_compatible(
    ckpt: dict[str, Any],
    window: WindowSpec | None = None,
    grid: GridSpec | None = None,
    transform: dict[str, Any] | None = None,
    rel_tol: float = 0.01,
) -> None:
    """Raise :class:`CheckpointMismatchError` naming every difference from the given setup."""
    problems = []
    if window is not None:
        built = WindowSpec(**ckpt["window"])
        if window.n_in != built.n_in:
            problems.append(f"built for {built.n_in} past frames, given {window.n_in}")
        if window.n_out > built.n_out:
            problems.append(f"built for up to {built.n_out} lead times, asked for {window.n_out}")
        if abs(window.timestep_minutes - built.timestep_minutes) > 1e-6:
            problems.append(f"built for a {built.timestep_minutes:g}-min time step, "
                            f"data has a {window.timestep_minutes:g}-min one")
    if grid is not None:
        built_g = GridSpec(**ckpt["grid"])
        if abs(grid.pixel_size_m - built_g.pixel_size_m) > rel_tol * built_g.pixel_size_m:
            problems.append(
                f"built for {built_g.pixel_size_m:g} m pixels, data has {grid.pixel_size_m:g} m"
            )
        for dim in ("height", "width"):
            b, g = getattr(built_g, dim), getattr(grid, dim)
            if b is not None and g is not None and b != g:
                problems.append(f"built for {dim} {b}, data has {g}")
    if transform is not None and transform != ckpt["transform"]:
        problems.append(f"built for transform {ckpt['transform']}, asked for {transform}")
    if problems:
        raise CheckpointMismatchError("checkpoint does not fit: " + "; ".join(problems))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
