"""The evaluation report: report.md, report.html, metrics.json, CSV tables and figures.

:func:`write_report` reads what :mod:`nowcast.evaluation.runner` left in a folder (``run.json``,
``cases.npz``, ``models/*/result.json`` and ``samples.npz``) and writes, beside them::

    report.md, report.html     tables, findings, speed, failures, run metadata, figures
    metrics.json               {"run": metadata, "models": {label: result}} (the per-window sums
                               stay in models/*/windows.npz)
    metrics.csv                every score: model, metric, variant, lead_min ("mean" = average), value
    spectra.csv                power spectra: model, lead_min, wavelength_km, forecast, observed
    speed.csv                  seconds per forecast per model on this machine
    figures/*.png, *.gif       metric vs lead time, CSI per threshold, spectra, sample cases

The "findings" paragraph is generated from the numbers (:mod:`nowcast.evaluation.findings`): which
model leads on each key metric, and where the focus model (default: registry name "diffusion")
does not lead. The document model, the tables and the figures have modules of their own
(``document``, ``tables``, ``figures``); this one assembles them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nowcast.evaluation import plots
from nowcast.evaluation.document import Doc, fmt
from nowcast.evaluation.events import events_of, score_on_windows
from nowcast.evaluation.figures import make_figures
from nowcast.evaluation.findings import KEY_METRICS, SET_LEVEL, findings, mean_of
from nowcast.evaluation.plots import lookup
from nowcast.evaluation.results import load_run, write_json
from nowcast.evaluation.tables import series_rows, spectra_rows, write_csv
from nowcast.fsutil import atomic_write

#: metrics also tabulated per lead time
PER_LEAD: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CSI 1 mm/h", ("csi", "1.0")), ("CSI 4 mm/h", ("csi", "4.0")), ("CRPS (mm/h)", ("crps",)),
    ("MSE (mm/h)²", ("mse_mm_h",)), ("SSIM", ("ssim",)),
)


def load_of(speed: Mapping[str, Any]) -> str:
    """"load / cores" of a model's speed record, e.g. "2.1 / 2"; "–" for runs that predate it."""
    if speed.get("load_average") is None:
        return "–"
    return f"{speed['load_average']:.1f} / {speed.get('cpu_count') or '?'}"


def _wall_time(run: Mapping[str, Any]) -> str:
    parts = run.get("parts") or [run]
    if len(parts) == 1:
        return f"Wall time {run.get('wall_s') or 0.0:.0f} s on {run.get('device_name', '?')}."

    def took(p: Mapping[str, Any]) -> str:
        return f"{p['wall_s']:.0f} s" if p.get("wall_s") is not None else "interrupted (time not recorded)"

    done = "; ".join(f"{took(p)} on {p.get('device_name', '?')}" for p in parts)
    return f"Run in {len(parts)} parts (`--resume`, commands below): {done}."


def ensemble_section(doc: Doc, ok: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float]) -> None:
    """Rank histograms, Brier score and skill, ROC area and spread–skill of every ensemble model."""
    have = plots.ensembles(ok)
    doc.h("Ensemble verification")
    deterministic = [k for k in ok if k not in have]
    if not have:
        doc.p("No model was scored as an ensemble in this run.")
        return
    first = next(iter(have.values()))
    groups = plots.group_titles(first, lead_minutes)
    doc.p("Pooled over every covered pixel of every window (pysteps.verification's rank histogram rule, "
          "reliability diagram and ROC curve; nowcast/evaluation/ensemble.py). "
          + (f"Deterministic models ({', '.join(deterministic)}) have no rank, spread or probabilities "
             "other than 0 and 1 and are left out here; their CRPS above is their MAE."
             if deterministic else ""))
    doc.h("Rank histogram", 3)
    doc.p(f"Rank of the observation among the members where the observation or a member reaches "
          f"{first['rank_histogram']['rank_min']:g} mm/h (below it values tie and take a random rank). "
          "Reliability index = sum of |frequency − 1/(M+1)| over the ranks (0 = flat); 'outside' = share of "
          "observations below or above every member (a consistent ensemble: 2/(M+1)); a U shape means too "
          "little spread, a dome too much.")
    doc.table(["model", "members", "reliability index", "outside", "outside expected"]
              + [f"index {g}" for g in groups],
              [[k, e["members"], e["rank_histogram"]["reliability_index"], e["rank_histogram"]["outside"],
                e["rank_histogram"]["outside_expected"]]
               + [p["reliability_index"] for p in e["rank_histogram"]["per_group"]] for k, e in have.items()])
    for thr in first["brier"]:
        doc.h(f"Probability of R ≥ {float(thr):g} mm/h: Brier skill score and ROC area", 3)
        doc.p("Brier skill score against the sample climatology (the observed frequency of the same pixels; "
              "1 = perfect, 0 = no better than that frequency); ROC area (0.5 = no discrimination).")
        doc.table(["model"] + [f"BSS {g}" for g in groups] + [f"ROC area {g}" for g in groups],
                  [[k] + [b["bss"] for b in e["brier"][thr]] + [c["area"] for c in e["roc"][thr]]
                   for k, e in have.items()])
    doc.h("Spread and skill", 3)
    doc.p("Spread = root of the mean member variance; skill = RMSE of the ensemble mean (mm/h); ratio = "
          "spread × sqrt((M+1)/M) / RMSE: 1 for a consistent ensemble, below 1 under-dispersive.")
    leads = sorted({0, max(0, len(lead_minutes) // 2 - 1), len(lead_minutes) - 1})
    doc.table(["model", "ratio, all leads"] + [f"ratio +{lead_minutes[i]:g}" for i in leads]
              + [f"spread / RMSE +{lead_minutes[i]:g}" for i in leads],
              [[k, e["spread_skill"]["ratio_all_leads"]] + [e["spread_skill"]["ratio"][i] for i in leads]
               + [f"{fmt(e['spread_skill']['spread'][i])} / {fmt(e['spread_skill']['rmse'][i])}"
                  for i in leads]
               for k, e in have.items()])


#: scores tabulated per event (the diffusion issue's two targets)
BY_EVENT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CSI 1 mm/h", ("csi", "1.0")), ("CRPS (mm/h)", ("crps",)),
)


def events_section(doc: Doc, run: Mapping[str, Any], ok: Mapping[str, Mapping[str, Any]]) -> None:
    """Each event's scores, pooled over its own windows as the split's are (from the per-window
    sums); nothing for a run of one event or one without per-window sums."""
    events = events_of(run)
    rows = {title: [[k, *(score_on_windows(r, path, w) for w in events.values())]
                    for k, r in ok.items()]
            for title, path in BY_EVENT}
    if len(events) < 2 or not any(v is not None for t in rows.values() for row in t for v in row[1:]):
        return
    doc.h("Scores by event (mean over lead times)")
    doc.p("The scores above pool every pixel of every window, so an event with more or more intense "
          "rain weighs more in them (a CRPS per pixel ten times another event's sets the split's mean "
          "almost alone). Here each event is pooled over its own windows; '–' where a model was not "
          "scored on all of them or the event has no rain above the threshold.")
    for title, table in rows.items():
        doc.h(title, 3)
        doc.table(["model"] + [f"{name} ({len(w)} windows)" for name, w in events.items()], table)


def write_report(folder: str | Path, focus: str = "diffusion", figures: bool = True) -> dict[str, Path]:
    """Write report.md/.html, metrics.json, CSVs and figures from a runner's folder."""
    folder = Path(folder)
    run, results = load_run(folder)
    ok = {k: r for k, r in results.items() if r.get("status") == "ok"}
    n_lead = int(run["n_out"])
    step = float(run.get("timestep_minutes") or 5.0)
    lead_minutes = [step * (i + 1) for i in range(n_lead)]
    n_windows = int(run["n_windows"])

    write_json(folder / "metrics.json", {"run": run, "models": {
        k: {key: v for key, v in r.items() if key != "per_window"} for k, r in results.items()}})
    write_csv(folder / "metrics.csv", ["model", "metric", "variant", "lead_min", "value"],
               series_rows(ok, lead_minutes))
    write_csv(folder / "spectra.csv",
               ["model", "lead_min", "wavelength_km", "freq_per_km", "power_forecast", "power_observed"],
               spectra_rows(ok, lead_minutes))
    speed_rows = [[k, r["speed"]["seconds_per_forecast"], r["speed"]["seconds_per_forecast_warm"],
                   r["speed"]["first_call_s"], r["speed"]["members"], r["speed"]["batch_size"],
                   r["speed"]["n_forecasts"], r["speed"]["device_name"], load_of(r["speed"])]
                  for k, r in ok.items()]
    speed_header = ["model", "s/forecast", "s/forecast (after 1st call)", "1st call s", "members",
                    "batch", "forecasts", "device", "load / cores"]
    write_csv(folder / "speed.csv", speed_header, speed_rows)
    made = make_figures(folder, ok, lead_minutes) if figures and ok else []

    doc = Doc(f"Nowcast evaluation: {run.get('name', folder.name)}")
    doc.p(f"{n_windows} windows of {run['n_in']} past → {n_lead} future frames ({step:g} min step), "
          f"{run.get('data', {}).get('where', '')}; scoring window {run.get('crop', '–')} px, uncovered "
          f"pixels masked; ensembles of {run['members']} members (deterministic models count as 1). "
          f"Point scores use the ensemble {run.get('point', 'mean')}, realism scores (LPIPS, FID, spectra) "
          f"member 0. {_wall_time(run)}")
    doc.h("Findings")
    titles = [t for t, p, _ in KEY_METRICS if tuple(p) in SET_LEVEL]
    if not any((r.get("per_window") or {}).get("mse_mm_h") for r in ok.values()):
        doc.p("These results hold no per-window sums (scored before nowcast kept them), so no lead "
              "below carries an interval and any may be within noise.")
    else:
        doc.p("Every lead comes with 95 % paired bootstrap intervals over the windows (windows resampled "
              "with replacement, the same draw for both models; a difference whose interval holds 0 is a "
              "tie; for the frequency bias, the difference of the distances from 1), except on "
              f"{' and '.join(titles)}: set-level scores with no per-window decomposition, whose leads are "
              "stated without an interval and may be within noise.")
    doc.items(findings(results, focus, n_windows))
    doc.h("Scores averaged over lead times")
    doc.table(["model", "windows"] + [f"{t} ({'↓' if b == 'min' else '↑' if b == 'max' else '→1'})"
                                      for t, _, b in KEY_METRICS],
              [[k, r["n_windows"]] + [mean_of(r, p) for _, p, _ in KEY_METRICS] for k, r in ok.items()])
    skipped = {r["scores"].get("skipped_reason", "") for r in ok.values() if r["scores"].get("skipped")}
    if skipped:
        doc.p("**LPIPS and FID skipped** (never run on random weights): " + "; ".join(sorted(skipped)))
    events_section(doc, run, ok)
    doc.h("Scores per lead time")
    for title, path in PER_LEAD:
        if any(lookup(r["scores"], (*path, "per_lead")) for r in ok.values()):
            doc.h(title, 3)
            doc.table(["model"] + [f"+{m:g}" for m in lead_minutes],
                      [[k] + list(lookup(r["scores"], (*path, "per_lead")) or []) for k, r in ok.items()])
    doc.h("Categorical scores per threshold (mean over lead times)")
    first = next(iter(ok.values()))["scores"] if ok else {}
    for key in [k for k in ("csi", "pod", "far", "bias") if k in first] + sorted(
            k for k in first if k.startswith("csi_pool")):
        thr = sorted(first[key], key=float)
        doc.h(key.upper().replace("_POOL", ", max-pool "), 3)
        doc.table(["model"] + [f"{float(t):g} mm/h" for t in thr],
                  [[k] + [lookup(r["scores"], (key, t, "mean")) for t in thr] for k, r in ok.items()])
    by_point = {k: r["scores"]["categorical_by_point"] for k, r in ok.items()
                if r["scores"].get("categorical_by_point")}
    if by_point:
        doc.h("CSI of the plain and the probability-matched ensemble mean (mean over lead times)", 3)
        doc.p("Every ensemble's CSI with both point forecasts: the plain mean smooths intense rain away, "
              "the probability-matched mean (pm_mean) keeps the members' rain amounts in the mean's pattern. "
              f"The tables above use the run's point forecast ({run.get('point', 'mean')}) for every model.")
        thr = sorted(next(iter(by_point.values()))["mean"]["csi"], key=float)
        doc.table(["model", "point forecast"] + [f"CSI {float(t):g} mm/h" for t in thr] + ["bias 1 mm/h"],
                  [[k, how] + [lookup(v[how], ("csi", t, "mean")) for t in thr]
                   + [lookup(v[how], ("bias", "1.0", "mean"))]
                   for k, v in by_point.items() for how in v])
    if "fss" in first:
        cols = [(t, s) for t in sorted(first["fss"], key=float) for s in sorted(first["fss"][t], key=int)]
        doc.h("FSS (mean over lead times)", 3)
        doc.table(["model"] + [f"{float(t):g} mm/h, {s} px" for t, s in cols],
                  [[k] + [lookup(r["scores"], ("fss", t, s, "mean")) for t, s in cols]
                   for k, r in ok.items()])
    ensemble_section(doc, ok, lead_minutes)
    doc.h("Speed (each model on the device named in its row)")
    doc.p("load / cores: the machine's 1-minute load average when the model's last forecast "
          "finished, against its core count; above the core count the model shared the CPU with "
          "other work and its times are inflated (measure speed with the sampler benchmark).")
    doc.table(speed_header, speed_rows)
    failed = {k: r for k, r in results.items() if r.get("status") != "ok"}
    if failed:
        doc.h("Models that failed")
        doc.table(["model", "status", "error"],
                  [[k, r.get("status"), r.get("error")] for k, r in failed.items()])
    doc.h("Figures")
    for src, caption in made:
        doc.img(src, caption)
    doc.h("Run metadata")
    commands = [f"command: `{p.get('command', '')}` (git {p.get('git', {}).get('commit', '?')})"
                for p in run.get("parts") or [run]]
    doc.items([*commands,
               f"windows: {n_windows} ({run.get('windows_note', '')})",
               "files: metrics.json (every number and the full config), metrics.csv, spectra.csv, "
               "speed.csv"])
    doc.h("Models", 3)
    doc.pre(json.dumps({k: r.get("describe", r.get("spec")) for k, r in results.items()}, indent=1,
                       default=str))
    doc.h("Data", 3)
    doc.pre(json.dumps(run.get("data", {}), indent=1, default=str))
    doc.h("Configuration", 3)
    doc.pre(json.dumps(run.get("config", {}), indent=1, default=str))
    atomic_write(folder / "report.md", doc.markdown())
    atomic_write(folder / "report.html", doc.html())
    return {name: folder / name for name in ("report.md", "report.html", "metrics.json", "metrics.csv",
                                             "spectra.csv", "speed.csv")}
