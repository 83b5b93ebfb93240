"""Run several forecasters on the same windows, streaming each into its own :class:`ScoreSuite`.

The runner never looks at what a model is: it builds each one with
:func:`nowcast.models.load_forecaster` from a :class:`nowcast.models.spec.ModelSpec` and only calls
``Forecaster.forecast(past, n_out, members, generator, motion)`` (``motion`` only when the
dataset yields one, e.g. from motion caches: then every model that advects uses the same).

Each model is bound to the data before its first forecast (:func:`nowcast.models.base.bind_to_store`,
once per store of the run): one that does not fit (e.g. a learned model trained at another time
step or pixel size) gets the status "refused" with the reason, one that breaks "failed"; the
others go on either way.

Each model's results are written as it finishes (:mod:`nowcast.evaluation.results` has the
folder layout), so a crash or a Ctrl-C loses at most the model that was running, and
``resume=True`` skips models already done.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nowcast.data.store import undecodable_chunk
from nowcast.evaluation.cases import choose_cases, evenly_spaced
from nowcast.evaluation.provenance import device_name
from nowcast.evaluation.results import (
    SHOW_MEMBERS,
    member_lead,
    pack_rain,
    read_result,
    write_npz,
    write_result,
)
from nowcast.evaluation.specs import EvaluatedModel, SpecLike, card_settings, parse_specs, weights_fingerprint
from nowcast.evaluation.suite import ScoreSuite
from nowcast.fsutil import WriteError
from nowcast.models.base import DoesNotFitError, bind_to_store
from nowcast.types import FUTURE, MASK, MOTION, PAST

log = logging.getLogger("nowcast.evaluate")


class EvaluationRunner:
    """Scores models one after the other on the windows ``indices`` of ``dataset``.

    Args:
        dataset: items as :class:`nowcast.data.dataset.RadarWindowDataset` yields them (past
            (T_in, h, w), future (n_out, h, w) mm/h, mask (h, w) bool, store name).
        indices: the windows of the run (positions in ``dataset``).
        output_dir: the report folder (see the module docstring for its layout).
        n_out: lead times scored (``future`` must hold that many frames).
        members: ensemble size asked of every model (deterministic models return 1).
        batch_size: windows per ``forecast`` call; num_workers: data-loader processes.
        device: torch device of the models and the scores.
        seed: seed of each model's generator (the same for every model, so equal models score equally).
        suite_kwargs: passed to :class:`ScoreSuite` (thresholds, perceptual, weights_dir, ...).
        n_cases: sample cases kept for the panels and the GIF.
        progress: show a progress bar per model (tqdm, on stderr).
        stores: ``describe_store`` of each store the windows come from (with its ``path``): every
            model is bound to each before it runs; none: models run unbound.
        n_in: past frames per window (for the binding; None: as many as each model needs).
        shape: (H, W) of the windows' frames (the scoring crop; None: each store's grid).
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], output_dir: str | Path, n_out: int,
                 members: int = 8, batch_size: int = 4, num_workers: int = 0,
                 device: str | torch.device = "cpu", seed: int = 0,
                 suite_kwargs: dict[str, Any] | None = None, n_cases: int = 2, progress: bool = True,
                 stores: Sequence[Mapping[str, Any]] = (), n_in: int | None = None,
                 shape: tuple[int, int] | None = None) -> None:
        if not len(indices):
            raise ValueError("no windows to evaluate")
        self.stores, self.n_in, self.shape = list(stores), n_in, shape
        self.dataset, self.indices = dataset, list(indices)
        self.out = Path(output_dir)
        self.n_out, self.members, self.batch_size = int(n_out), int(members), max(1, int(batch_size))
        self.num_workers, self.device, self.seed = num_workers, torch.device(device), int(seed)
        self.suite_kwargs, self.progress = dict(suite_kwargs or {}), progress
        self.n_cases = int(n_cases)
        self.cases: list[int] = []  # positions in self.indices

    # ------------------------------------------------------------------ data
    def _loader(self, positions: Sequence[int]) -> DataLoader:
        return DataLoader(Subset(self.dataset, [self.indices[p] for p in positions]),
                          batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def prepare(self) -> list[int]:
        """Pick the sample cases (rainiest observed futures) and write ``cases.npz``."""
        rain, stores = [], []
        for batch in self._loader(range(len(self.indices))):
            fut, mask = batch[FUTURE], batch[MASK][:, None].expand_as(batch[FUTURE])
            covered = mask.flatten(1).sum(1).clamp(min=1)
            rain += (torch.where(mask, fut, 0).flatten(1).sum(1) / covered).tolist()
            stores += list(batch.get("store", ["?"] * len(fut)))
        self.cases = choose_cases(rain, stores, self.n_cases)
        self.window_rain = rain
        items = [self.dataset[self.indices[p]] for p in self.cases]
        self.out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"positions": np.array(self.cases, dtype=np.int64)}
        for c, item in enumerate(items):
            arrays[f"case{c}_past"] = pack_rain(item[PAST].numpy())
            arrays[f"case{c}_future"] = pack_rain(item[FUTURE][: self.n_out].numpy())
            arrays[f"case{c}_mask"] = item[MASK].numpy()
            arrays[f"case{c}_store"] = np.array(str(item.get("store", "?")))
            arrays[f"case{c}_anchor"] = np.array(int(item["anchor"]) if "anchor" in item else 0, np.int64)
        write_npz(self.out / "cases.npz", arrays)
        return self.cases

    # ------------------------------------------------------------------ models
    def result_path(self, spec: EvaluatedModel) -> Path:
        return self.out / "models" / spec.slug / "result.json"

    def done(self, spec: EvaluatedModel) -> bool:
        """True if ``spec`` already has a successful result in the output folder, on its windows
        (``window_indices``: positions, which suffice because ``nowcast evaluate --resume`` refuses
        a folder whose run scored other windows, data or settings before the runner starts, see
        :func:`nowcast.evaluation.results.run_identity`), with the same weights and card settings."""
        path = self.result_path(spec)
        if not path.exists():
            return False
        try:
            res = read_result(path)
        except (OSError, ValueError):
            return False
        if res.get("status") != "ok" or res.get("window_indices") != self.model_indices(spec):
            return False
        if "weights" in res and res["weights"] != weights_fingerprint(spec):
            log.info("%s: its weights changed since the stored result, scored again", spec.label)
            return False
        if res.get("card_args", {}) != card_settings(spec):
            log.info("%s: its model card's forecast arguments changed since the stored result, "
                     "scored again", spec.label)
            return False
        return True

    def model_positions(self, spec: EvaluatedModel) -> list[int]:
        """Positions a model is scored on: all, or for ``max_windows=k`` the sample cases (the
        rainiest windows, so a slow sampler's few windows hold rain, and its panels need no extra
        forecasts) and then evenly spaced windows, k in all."""
        n, k = len(self.indices), spec.max_windows
        if k is None or k >= n:
            return list(range(n))
        picked = list(dict.fromkeys(self.cases))[:k]
        for p in [*evenly_spaced(n, k), *range(n)]:
            if len(picked) >= k:
                break
            if p not in picked:
                picked.append(p)
        return sorted(picked)

    def model_indices(self, spec: EvaluatedModel) -> list[int]:
        return [self.indices[p] for p in self.model_positions(spec)]

    def run(self, specs: Sequence[SpecLike], resume: bool = False,
            on_result: Callable[[dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
        """Evaluate every model (a model's failure is recorded, not raised; a failed write,
        :class:`~nowcast.fsutil.WriteError`, stops the run); returns label -> result."""
        specs = parse_specs(specs)
        if not self.cases and self.n_cases:
            self.prepare()
        results = {}
        for spec in specs:
            if resume and self.done(spec):
                log.info("%s: result exists, skipped (--resume)", spec.label)
                results[spec.label] = read_result(self.result_path(spec))
            else:
                results[spec.label] = self.run_model(spec)
            if on_result is not None:
                on_result(results[spec.label])
        return results

    def run_model(self, spec: EvaluatedModel) -> dict[str, Any]:
        """Score one model on its windows, write its result (and samples), return the result."""
        folder = self.out / "models" / spec.slug
        folder.mkdir(parents=True, exist_ok=True)
        positions = self.model_positions(spec)
        result: dict[str, Any] = {
            "label": spec.label, "spec": spec.to_dict(), "status": "failed", "error": None,
            "n_windows": len(positions), "n_windows_run": len(self.indices),
            "window_indices": [self.indices[p] for p in positions],
            "members": spec.members or self.members, "weights": weights_fingerprint(spec),
            "card_args": card_settings(spec),
        }
        t0 = time.perf_counter()
        try:
            result.update(self._score(spec, positions, folder))
            result["status"] = "ok"
        except WriteError:  # a full disk is not the model's failure: stop, --resume goes on later
            raise
        except DoesNotFitError as err:  # not the data it was built for: said, not a traceback
            log.error("%s refused: %s", spec.label, err)
            result["status"], result["error"] = "refused", str(err)
        except Exception as err:  # one broken model must not cost the others' results
            if undecodable_chunk(err):  # a damaged store fails every model: stop, said in one line
                raise
            log.error("%s failed: %s: %s", spec.label, type(err).__name__, err)
            result["error"] = f"{type(err).__name__}: {err}"
            result["traceback"] = traceback.format_exc(limit=8)
        result["wall_s"] = time.perf_counter() - t0
        write_result(folder, result)
        return result

    def _score(self, spec: EvaluatedModel, positions: list[int], folder: Path) -> dict[str, Any]:
        t_load = time.perf_counter()
        forecaster = spec.load().to(self.device)
        for store in self.stores:
            bind_to_store(forecaster, store, self.n_out, n_in=self.n_in,
                          shape=self.shape or tuple(store["grid_shape"]))
        load_s = time.perf_counter() - t_load
        members = spec.members or self.members
        generator = torch.Generator(device=forecaster.device).manual_seed(self.seed)
        suite = ScoreSuite(self.n_out, **self.suite_kwargs).to(self.device)
        case_of = {p: c for c, p in enumerate(self.cases)}
        samples: dict[str, np.ndarray] = {}
        call_s: list[float] = []
        call_n: list[int] = []
        per_window: dict[str, list[torch.Tensor]] = {}
        bar = _progress(len(positions), spec.label, self.progress)
        for chunk, batch in zip(_chunks(positions, self.batch_size), self._loader(positions), strict=True):
            rain, seconds = self._forecast(forecaster, batch[PAST], members, generator, batch.get(MOTION))
            call_s.append(seconds)
            call_n.append(len(chunk))
            target, mask = batch[FUTURE][:, : self.n_out].to(self.device), batch[MASK].to(self.device)
            suite.update(rain, target, mask)
            for key, value in suite.window_sums().items():
                per_window.setdefault(key, []).append(value.cpu())
            for b, p in enumerate(chunk):
                if p in case_of:
                    _keep_sample(samples, case_of[p], rain[b])
            bar.update(len(chunk))
        bar.close()
        # cases outside a model's subset: forecast for the panels unless the spec says not to
        missing = [p for p in self.cases if p not in positions] if spec.panels else []
        for p in missing:
            batch = _collate([self.dataset[self.indices[p]]])
            rain, _ = self._forecast(forecaster, batch[PAST], members, generator, batch.get(MOTION))
            _keep_sample(samples, case_of[p], rain[0])
        if samples:
            write_npz(folder / "samples.npz", samples)
        n = sum(call_n)
        warm = (sum(call_s[1:]) / sum(call_n[1:])) if len(call_s) > 1 else sum(call_s) / n
        speed = {
            "seconds_per_forecast": sum(call_s) / n,
            "seconds_per_forecast_warm": warm,
            "first_call_s": call_s[0], "total_forecast_s": sum(call_s), "n_forecasts": n,
            "batch_size": self.batch_size, "members": members, "load_s": load_s,
            "device": str(forecaster.device), "device_name": device_name(forecaster.device),
            "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        }
        windows = {"thresholds": list(suite.thresholds), "pools": list(suite.pools),
                   "fss_thresholds": list(suite.fss.thresholds), "fss_scales": list(suite.fss.scales),
                   "window_indices": [self.indices[p] for p in positions],
                   **{key: torch.cat(values).tolist() for key, values in per_window.items()}}
        return {"describe": forecaster.describe(), "deterministic": bool(forecaster.deterministic),
                "scores": suite.compute(), "speed": speed, "per_window": windows}

    def _forecast(self, forecaster: Any, past: torch.Tensor, members: int, generator: torch.Generator,
                  motion: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """One timed ``forecast`` call -> ((B, M, n_out, H, W) on the scoring device, seconds)."""
        _sync(self.device)
        t0 = time.perf_counter()
        rain = forecaster.forecast(past.to(forecaster.device), self.n_out, members, generator,
                                   motion=motion.to(forecaster.device) if motion is not None else None)
        _sync(self.device)
        return rain.to(self.device), time.perf_counter() - t0


def _keep_sample(samples: dict[str, np.ndarray], case: int, rain: torch.Tensor) -> None:
    """Keep what the report draws of a case's forecast ``rain`` (M, T, H, W) mm/h (see module docstring)."""
    rain = rain.float().cpu()
    lead = member_lead(rain.shape[1])
    samples[f"case{case}_member0"] = pack_rain(rain[0].numpy())
    samples[f"case{case}_members"] = pack_rain(rain[:SHOW_MEMBERS, lead].numpy())
    samples[f"case{case}_mean"] = pack_rain(rain[:, lead].mean(0).numpy())


def _collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in (PAST, FUTURE, MASK, MOTION) if k in items[0]}


def _chunks(seq: Sequence[int], size: int) -> list[list[int]]:
    return [list(seq[i:i + size]) for i in range(0, len(seq), size)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="window", dynamic_ncols=True)
