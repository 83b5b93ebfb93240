"""The files of an evaluation's output folder: how results are written and read back.

Output folder layout (each model's files are written when it finishes)::

    run.json                     run metadata (config, windows, data description, git, device)
    cases.npz                    past / observed future / mask of the sample cases (see pack_rain)
    models/<slug>/result.json    scores (ScoreSuite.compute()), speed, describe(), or the error
    models/<slug>/windows.npz    per window the sums every pooled score is made of
                                 (ScoreSuite.window_sums: so a model scored on a subset compares
                                 with the others on its windows, and every difference gets a
                                 paired bootstrap interval); read back by :func:`read_result`
    models/<slug>/samples.npz    the model's forecasts of the sample cases: member 0 at every lead,
                                 a few members and the ensemble mean at member_lead(n_out)
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.evaluation.data import EvaluateInputError
from nowcast.evaluation.specs import EvaluatedModel
from nowcast.fsutil import atomic_write

#: ensemble members kept per sample case for the panels (member 0 is also the GIF's field)
SHOW_MEMBERS = 4


def member_lead(n_out: int) -> int:
    """Lead index at which the report shows ensemble members (the middle of the forecast)."""
    return max(0, n_out // 2 - 1)


def pack_rain(rain: np.ndarray) -> np.ndarray:
    """mm/h -> uint16 hundredths of mm/h (floored, clipped at 655 mm/h): small, exact for display."""
    return np.clip(np.floor(np.asarray(rain, dtype=np.float64) * 100.0), 0, 65535).astype(np.uint16)


def unpack_rain(packed: np.ndarray) -> np.ndarray:
    return packed.astype(np.float32) / 100.0


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (NaN/inf are written as null)."""
    atomic_write(path, _as_json(obj, indent=1))


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` atomically: a full disk leaves no half file that a
    later ``--resume`` or report would read."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write(path, buf.getvalue())


def _as_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` as the JSON text :func:`write_json` writes (NaN/inf as null, other objects as ``str``)."""
    return json.dumps(_finite(obj), indent=indent, default=str)


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """``result.json`` of a model, its per-window sums (``result["per_window"]``, thousands of
    numbers) apart in a compressed ``windows.npz``."""
    per_window = result.get("per_window")
    if per_window:
        write_npz(folder / "windows.npz", per_window)
    write_json(folder / "result.json", {k: v for k, v in result.items() if k != "per_window"})


def read_result(path: Path) -> dict[str, Any]:
    """A model's ``result.json`` with its per-window sums from ``windows.npz`` beside it, if any."""
    result = json.loads(path.read_text())
    windows = path.parent / "windows.npz"
    if windows.exists():
        with np.load(windows) as z:
            result["per_window"] = {k: z[k].tolist() for k in z.files}
    return result


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def load_run(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(run metadata, {label: result})`` from a report folder, in the run's model order."""
    folder = Path(folder)
    run = json.loads((folder / "run.json").read_text())
    results = {}
    for spec in run.get("models", []):
        s = EvaluatedModel.parse(spec)
        path = folder / "models" / s.slug / "result.json"
        results[s.label] = (read_result(path) if path.exists() else
                            {"label": s.label, "spec": spec, "status": "not run", "error": "no result yet"})
    return run, results


def run_identity(run: Mapping[str, Any]) -> dict[str, Any]:
    """What the results in a folder were scored on and how, by name: ``--resume`` continues a
    folder only when this is the same (:func:`merge_runs`); models and devices may differ.

    The windows by identity (store and anchor time) with their positions (the stored per-window
    sums and each result's ``window_indices`` are positions), the past frames and lead times, the
    scoring crop (0: the full field, as ``--crop 0``), the motion source, the ensemble size, the
    point forecast, the seed, and each store used as ``run.json`` describes it (source,
    conversion, frames, time range, grid, ...) but not its path, so a store copied to another
    machine still continues the run there. Values as ``run.json`` stores them (tuples as lists,
    NaN as null), so a run's identity compares equal to that of its own ``run.json``.
    """
    data = run.get("data") or {}
    windows = zip(run.get("window_indices") or [], run.get("windows") or [], strict=True)
    identity = {"windows": [[position, window] for position, window in windows],
                "past frames": run.get("n_in"), "lead times": run.get("n_out"), "crop": run.get("crop") or 0,
                "motion": data.get("motion", "estimate"), "members": run.get("members"),
                "point forecast": run.get("point"), "seed": (run.get("config") or {}).get("seed"),
                "stores": {name: {k: v for k, v in store.items() if k != "path"}
                         for name, store in (data.get("stores") or {}).items()}}
    return json.loads(_as_json(identity))


def _difference(old: Any, new: Any) -> str:
    """Where two unequal values first differ, short: ``'<where> <old> there, <new> now'`` (a
    mapping is followed into its first differing key, a list shows its length or first differing item)."""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.keys() != new.keys():
            return f"{sorted(old)} there, {sorted(new)} now"
        key = next(k for k in old if old[k] != new[k])
        return f"{key} {_difference(old[key], new[key])}"
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return f"{len(old)} there, {len(new)} now"
        i = next(i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
        return f"#{i + 1} {old[i]!r} there, {new[i]!r} now"
    return f"{old!r} there, {new!r} now"


def merge_runs(old: dict[str, Any], new: dict[str, Any], out: Path) -> dict[str, Any]:
    """The run metadata of ``--resume`` into a folder that holds ``old``.

    The new run must score the same thing (:func:`run_identity`: windows, stores, crop, lead times,
    motion, members, point forecast, seed), else an :class:`EvaluateInputError` names each
    difference (its value there and now) before anything is written or forecast; every result in
    a folder was thus scored under its ``run.json``, which is why the runner's ``done`` needs only
    each model's own checks. The model list is the old one with this run's models replacing or
    joining it (so a report can be finished on another machine, e.g. the diffusion samplers on a
    GPU after the baselines on a CPU), and each invocation is kept in ``parts``."""
    was, now = run_identity(old), run_identity(new)
    differ = [f"other {key} ({_difference(was[key], now[key])})" for key in was if was[key] != now[key]]
    if differ:
        raise EvaluateInputError(f"{out} holds results for {', '.join(differ)}; use another --output "
                                 "folder, or --overwrite instead of --resume to replace them")
    models = {EvaluatedModel.parse(m).label: m for m in old.get("models", [])}
    models.update({EvaluatedModel.parse(m).label: m for m in new["models"]})
    keys = ("command", "device_name", "git", "started", "wall_s")
    parts = old.get("parts") or [{k: old.get(k) for k in keys}]
    return {**new, "models": list(models.values()), "parts": [*parts, *new["parts"]]}
