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

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.evaluation.data import EvaluateInputError
from nowcast.evaluation.specs import EvaluatedModel

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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=1, default=str))
    tmp.replace(path)


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """``result.json`` of a model, its per-window sums (``result["per_window"]``, thousands of
    numbers) apart in a compressed ``windows.npz``."""
    per_window = result.get("per_window")
    if per_window:
        tmp = folder / "windows.tmp.npz"
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in per_window.items()})
        tmp.replace(folder / "windows.npz")
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


def merge_runs(old: dict[str, Any], new: dict[str, Any], out: Path) -> dict[str, Any]:
    """The run metadata of ``--resume`` into a folder that holds ``old``: the same windows, lead
    times and motion are required; the model list is the old one with this run's models
    replacing or joining it (so a report can be finished on another machine, e.g. the diffusion
    samplers on a GPU after the baselines on a CPU), and each invocation is kept in ``parts``."""
    same = {"windows": old.get("window_indices") == new["window_indices"],
            "lead times": old.get("n_out") == new["n_out"],
            "motion": old.get("data", {}).get("motion", "estimate") == new["data"]["motion"]}
    differ = [k for k, ok in same.items() if not ok]
    if differ:
        raise EvaluateInputError(f"{out} holds results for other {', '.join(differ)}; "
                                 "use another --output or drop --resume")
    models = {EvaluatedModel.parse(m).label: m for m in old.get("models", [])}
    models.update({EvaluatedModel.parse(m).label: m for m in new["models"]})
    keys = ("command", "device_name", "git", "started", "wall_s")
    parts = old.get("parts") or [{k: old.get(k) for k in keys}]
    return {**new, "models": list(models.values()), "parts": [*parts, *new["parts"]]}
