"""The report's figures: scores against lead time, CSI per threshold, spectra, sample-case panels
and animations (drawn by :mod:`nowcast.evaluation.plots` from the folder's stored cases and samples)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.evaluation import plots
from nowcast.evaluation.results import member_lead, unpack_rain
from nowcast.evaluation.specs import EvaluatedModel

log = logging.getLogger(__name__)


def _cases(folder: Path) -> list[dict[str, np.ndarray]]:
    path = folder / "cases.npz"
    if not path.exists():
        return []
    with np.load(path) as z:
        n = len(z["positions"])
        keys = ("past", "future", "mask", "store", "anchor")
        return [{k: unpack_rain(z[f"case{c}_{k}"]) if k in ("past", "future") else z[f"case{c}_{k}"]
                 for k in keys} for c in range(n)]


def _samples(folder: Path, results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for label, res in results.items():
        path = folder / "models" / EvaluatedModel.parse(res["spec"]).slug / "samples.npz"
        if path.exists():
            with np.load(path) as z:
                out[label] = {k: unpack_rain(z[k]) for k in z.files}
    return out


def _case_title(case: Mapping[str, np.ndarray]) -> str:
    anchor = np.datetime64(int(case["anchor"]), "ns").astype("datetime64[m]")
    return f"{case['store']} issued {anchor}Z"


def make_figures(folder: Path, results: Mapping[str, Mapping[str, Any]],
                 lead_minutes: Sequence[float]) -> list[tuple[str, str]]:
    """Draw every figure into ``folder/figures``; returns [(relative path, caption)]."""
    figs = folder / "figures"
    figs.mkdir(exist_ok=True)
    made: list[tuple[str, str]] = []

    def add(path: Path | None, caption: str) -> None:
        if path is not None:
            made.append((path.relative_to(folder).as_posix(), caption))

    add(plots.plot_lead_times(results, lead_minutes, figs / "lead_times.png"), "Scores against lead time")
    add(plots.plot_csi_thresholds(results, figs / "csi_thresholds.png"),
        "CSI (mean over lead times) per threshold, plain and after max-pooling")
    add(plots.plot_spectra(results, lead_minutes, figs / "spectra.png"),
        "Radially averaged power spectra (member 0 vs observed), window-averaged")
    add(plots.plot_rank_histograms(results, lead_minutes, figs / "rank_histograms.png"),
        "Rank histograms of the ensembles (all lead times and per lead-time group)")
    add(plots.plot_reliability(results, lead_minutes, figs / "reliability.png"),
        f"Reliability diagrams (bins of at least {plots.MIN_BIN_SAMPLES} pixels)")
    add(plots.plot_roc(results, lead_minutes, figs / "roc.png"), "ROC curves")
    add(plots.plot_spread_skill(results, lead_minutes, figs / "spread_skill.png"),
        "Spread against the error of the ensemble mean")
    samples = _samples(folder, results)
    lacking = [label for label in results if label not in samples]
    kept = sorted(figs.glob("case*.png")) + sorted(figs.glob("case*.gif"))
    if lacking and kept:  # e.g. a clone (samples.npz are not in git): fewer models must not overwrite them
        log.warning("sample-case figures kept as drawn before: no stored samples here for %s",
                    ", ".join(lacking))
        for path in kept:
            add(path, f"{path.stem}: sample case, kept from an earlier drawing (this folder lacks the stored "
                      f"samples of {len(lacking)} model(s), so it may not show every model)")
        return made
    for c, case in enumerate(_cases(folder)):
        member0 = {k: s[f"case{c}_member0"] for k, s in samples.items() if f"case{c}_member0" in s}
        if not member0:
            continue
        title = _case_title(case)
        add(plots.plot_case(case, member0, lead_minutes, title, figs / f"case{c}.png"),
            f"Case {c}: {title}; past, observed and member 0 of each model")
        lead = member_lead(len(case["future"]))
        members = {k: s[f"case{c}_members"] for k, s in samples.items() if f"case{c}_members" in s}
        means = {k: s[f"case{c}_mean"] for k, s in samples.items() if f"case{c}_mean" in s}
        add(plots.plot_members(case, members, means, lead, lead_minutes[lead], title,
                               figs / f"case{c}_members.png"),
            f"Case {c}: ensemble members and ensemble mean at +{lead_minutes[lead]:g} min")
        if c == 0:
            add(plots.write_case_gif(case, member0, lead_minutes, title, figs / "case0.gif"),
                "Case 0 animated over lead time (observed and member 0 of each model)")
    return made
