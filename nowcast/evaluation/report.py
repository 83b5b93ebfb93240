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

The "findings" paragraph is generated from the numbers: which model leads on each key metric,
and where the focus model (default: registry name "diffusion") does not lead.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.evaluation import plots
from nowcast.evaluation.bootstrap import Difference, Pooled, paired_difference, pooled_from_counts
from nowcast.evaluation.plots import lookup
from nowcast.evaluation.runner import EvaluatedModel, member_lead, read_result, unpack_rain, write_json

#: (column title, path into the scores, better: "min" | "max" | "one") of the summary table
KEY_METRICS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("MSE (mm/h)²", ("mse_mm_h",), "min"), ("MSE pixel", ("mse_pixel",), "min"),
    ("PSNR", ("psnr",), "max"), ("SSIM", ("ssim",), "max"),
    ("LPIPS", ("lpips",), "min"), ("FID", ("fid",), "min"),
    ("CSI 1 mm/h", ("csi", "1.0"), "max"), ("CSI 4 mm/h", ("csi", "4.0"), "max"),
    ("CSI 8 mm/h", ("csi", "8.0"), "max"), ("CSI 4 mm/h pool 16", ("csi_pool16", "4.0"), "max"),
    ("bias 1 mm/h", ("bias", "1.0"), "one"),
    ("FSS 1 mm/h 16 px", ("fss", "1.0", "16"), "max"), ("FSS 4 mm/h 16 px", ("fss", "4.0", "16"), "max"),
    ("CRPS", ("crps",), "min"), ("RALSD (dB)", ("ralsd",), "min"),
)
#: metrics also tabulated per lead time
PER_LEAD: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CSI 1 mm/h", ("csi", "1.0")), ("CSI 4 mm/h", ("csi", "4.0")), ("CRPS (mm/h)", ("crps",)),
    ("MSE (mm/h)²", ("mse_mm_h",)), ("SSIM", ("ssim",)),
)
#: summary metrics without a per-window decomposition, whose leads carry no bootstrap interval
SET_LEVEL = {("fid",), ("ralsd",)}
DIRECTION_TEXT = {"min": "lower is better", "max": "higher is better", "one": "1 is best"}


def fmt(x: Any) -> str:
    """4 significant digits; '–' for a missing value."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# ----------------------------------------------------------------------------- document


class Doc:
    """A tiny document model rendered both as Markdown and as HTML (one source, two outputs)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple[str, Any]] = []

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, lines: Sequence[str]) -> None:
        if lines:
            self.blocks.append(("ul", list(lines)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(c) for c in header], [[fmt(c) for c in r] for r in rows])))

    def img(self, src: str, alt: str) -> None:
        self.blocks.append(("img", (src, alt)))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h":
                out += [f"{'#' * val[0]} {val[1]}", ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "ul":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "table":
                cell = lambda s: s.replace("|", "\\|")  # noqa: E731
                out += ["| " + " | ".join(map(cell, val[0])) + " |",
                        "|" + "|".join("---" for _ in val[0]) + "|"]
                out += ["| " + " | ".join(map(cell, r)) + " |" for r in val[1]] + [""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
            elif kind == "pre":
                out += ["```", val, "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{e(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(val)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in val) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{e(c)}</th>" for c in val[0])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                               for r in val[1])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "img":
                body.append(f'<figure><img src="{e(val[0])}" alt="{e(val[1])}"><figcaption>{e(val[1])}'
                            "</figcaption></figure>")
            elif kind == "pre":
                body.append(f"<pre>{e(val)}</pre>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
                 "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
                 "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
                 "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
                 "pre{background:#f6f6f6;padding:0.5em;overflow-x:auto;font-size:12px}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(self.title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then turn Markdown **bold** into <b> (the only inline markup the report uses)."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


# ----------------------------------------------------------------------------- numbers


def _wall_time(run: Mapping[str, Any]) -> str:
    parts = run.get("parts") or [run]
    if len(parts) == 1:
        return f"Wall time {run.get('wall_s') or 0.0:.0f} s on {run.get('device_name', '?')}."

    def took(p: Mapping[str, Any]) -> str:
        return f"{p['wall_s']:.0f} s" if p.get("wall_s") is not None else "interrupted (time not recorded)"

    done = "; ".join(f"{took(p)} on {p.get('device_name', '?')}" for p in parts)
    return f"Run in {len(parts)} parts (`--resume`, commands below): {done}."


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


def mean_of(result: Mapping[str, Any], path: Sequence[str]) -> float | None:
    return lookup(result.get("scores", {}), (*path, "mean"))


def leaders(results: Mapping[str, Mapping[str, Any]], path: Sequence[str], better: str) -> list[str]:
    """Labels with the best mean of ``path`` (ties included); [] if no model has a value."""
    vals = {k: mean_of(r, path) for k, r in results.items()}
    vals = {k: (abs(v - 1.0) if better == "one" else -v if better == "max" else v)
            for k, v in vals.items() if v is not None}
    if not vals:
        return []
    best = min(vals.values())
    return [k for k, v in vals.items() if v <= best + 1e-12 * max(1.0, abs(best))]


def findings(results: Mapping[str, Mapping[str, Any]], focus: str, n_windows: int) -> list[str]:
    """Generated statements: the leader on each key metric, where the focus model does not lead.

    Only models scored on every window are ranked: a subset can be easier or harder than the
    rest, so a subset model's numbers are reported but never called a lead or a loss.
    """
    ok = {k: r for k, r in results.items() if r.get("status") == "ok"}
    full = {k: r for k, r in ok.items() if r["n_windows"] >= n_windows}
    lines = []
    led: dict[str, list[str]] = {k: [] for k in full}
    lost: dict[str, list[str]] = {k: [] for k in full}
    for title, path, better in KEY_METRICS:
        best = leaders(full, path, better)
        if not best:
            continue
        shown = ", ".join(f"{b} ({fmt(mean_of(full[b], path))})" for b in best)
        margin = margin_text(best[0], full, path, better)
        lines.append(f"**{title}** ({DIRECTION_TEXT[better]}): {shown} leads.{margin}")
        for k in full:
            if mean_of(full[k], path) is not None:
                (led if k in best else lost)[k].append(f"{title} (leader: {', '.join(best)})" if k not in best
                                                        else title)
    focus_models = [k for k, r in ok.items() if r["spec"]["name"] == focus]
    if not focus_models:
        lines.append(f"No **{focus}** model was scored successfully in this run, so it is not compared.")
    for k in focus_models:
        if k not in full:
            continue
        if lost[k]:
            lines.append(f"**{k}** does not lead on: {'; '.join(lost[k])}.")
        lines.append(f"**{k}** leads on: {', '.join(led[k]) if led[k] else 'no key metric'}.")
        against = against_best_other(k, full, focus)
        if against:
            lines.append(f"**{k}** against the best model of another kind on each metric (the difference "
                         f"in {k}'s favour, 95 % paired bootstrap interval): {against}.")
    for k, r in ok.items():
        if k not in full:
            lines.append(f"**{k}** was scored on a subset of {r['n_windows']} of the {n_windows} windows "
                         "(the sample cases first), so it is not ranked against the others; its numbers are "
                         "in the tables for reference only.")
            if r["spec"]["name"] == focus:
                lines += same_window_comparison(k, r, full)
    return lines


def window_pooled(result: Mapping[str, Any], path: Sequence[str]) -> tuple[list[int], Pooled] | None:
    """(window indices, :class:`Pooled`) of a summary metric from ``result``'s per-window sums
    (:meth:`ScoreSuite.window_sums`); None for FID and the spectra (set-level scores) and for a result
    written before per-window sums were kept."""
    per = result.get("per_window") or {}
    if "mse_mm_h" not in per:
        return None
    key, windows = path[0], list(per["window_indices"])

    def at(values: Sequence[float], x: str) -> int | None:
        found = [i for i, v in enumerate(values) if float(v) == float(x)]
        return found[0] if found else None

    if key in ("mse_mm_h", "mse_pixel", "ssim", "crps", "lpips", "psnr"):
        sums = np.asarray(per.get("mse_pixel" if key == "psnr" else key, []))
        if not sums.size:
            return None
        return windows, Pooled(sums[..., 0], sums[..., 1], "psnr" if key == "psnr" else "ratio")
    if key in ("csi", "bias") or key.startswith("csi_pool"):
        table = per.get("counts" + key[len("csi"):] if key.startswith("csi_pool") else "counts")
        j = at(per["thresholds"], path[1])
        if table is None or j is None:
            return None
        counts = np.asarray(table)[:, :, j]  # (W, T, 3)
        if key == "bias":
            h, m, f = counts[..., 0], counts[..., 1], counts[..., 2]
            return windows, Pooled(h + f, h + m, "distance_from_one")
        return windows, pooled_from_counts(counts)
    if key == "fss":
        i, j = at(per["fss_thresholds"], path[1]), at(per["fss_scales"], path[2])
        if i is None or j is None:
            return None
        f2, fo, o2 = np.moveaxis(np.asarray(per["fss"])[:, :, i, j], -1, 0)
        return windows, Pooled(f2 - 2 * fo + o2, f2 + o2, "one_minus")
    return None


def paired(a: Mapping[str, Any], b: Mapping[str, Any], path: Sequence[str],
           windows: Sequence[int] | None = None) -> Difference | None:
    """Paired bootstrap difference a - b of a summary metric on the windows both were scored on (or
    on ``windows``, which both must hold); None for a set-level metric or a result without
    per-window sums. For a frequency bias the difference is of the distances from 1."""
    pa, pb = window_pooled(a, path), window_pooled(b, path)
    if pa is None or pb is None:
        return None
    shared = list(windows) if windows is not None else [w for w in pa[0] if w in set(pb[0])]
    rows_a, rows_b = {w: i for i, w in enumerate(pa[0])}, {w: i for i, w in enumerate(pb[0])}
    if not shared or any(w not in rows_a or w not in rows_b for w in shared):
        return None
    return paired_difference(pa[1].subset([rows_a[w] for w in shared]),
                             pb[1].subset([rows_b[w] for w in shared]))


def margin_text(leader: str, results: Mapping[str, Mapping[str, Any]], path: Sequence[str],
                better: str) -> str:
    """How far ``leader`` is ahead of every other model on ``path``, with 95 % paired bootstrap
    intervals; differences whose interval holds 0 are called ties."""
    sign = 1.0 if better == "max" else -1.0  # "min", and "one" (compared as distances from 1)
    ahead, ties = [], []
    n = 0
    for other, res in results.items():
        if other == leader:
            continue
        d = paired(results[leader], res, path)
        if d is None:
            continue
        n = d.n_windows
        low, high = sorted((sign * d.low, sign * d.high))
        text = f"{other} {sign * d.value:+.3g} [{low:+.3g}, {high:+.3g}]"
        (ties if d.is_tie else ahead).append(text)
    if not ahead and not ties:
        return ""
    parts = [f"ahead of {'; '.join(ahead)}"] if ahead else []
    parts += [f"**tied** (noise could reverse the order) with {'; '.join(ties)}"] if ties else []
    return (f" Margin, 95 % paired bootstrap interval over the {n} windows: " + "; ".join(parts) + ".")


def against_best_other(label: str, full: Mapping[str, Mapping[str, Any]], focus: str) -> str:
    """``label`` (a ``focus`` model) against the best non-``focus`` model on each metric with per-window
    sums: "CSI 1 mm/h vs extrapolation -0.014 [-0.02, -0.007] (behind); ..."."""
    others = {k: r for k, r in full.items() if r["spec"]["name"] != focus}
    parts = []
    for title, path, better in KEY_METRICS:
        best = leaders(others, path, better)
        d = paired(full[label], full[best[0]], path) if best else None
        if d is None:
            continue
        sign = 1.0 if better == "max" else -1.0  # "min", and "one" (compared as distances from 1)
        low, high = sorted((sign * d.low, sign * d.high))
        verdict = "a tie" if d.is_tie else "ahead" if sign * d.value > 0 else "behind"
        parts.append(f"{title} vs {best[0]} {sign * d.value:+.3g} [{low:+.3g}, {high:+.3g}] ({verdict})")
    return "; ".join(parts)


def same_window_comparison(label: str, result: Mapping[str, Any],
                           full: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A subset model against every fully scored model on the subset's own windows (CSI at 1 mm/h,
    mean over lead times, pooled over those windows; paired bootstrap intervals)."""
    path = ("csi", "1.0")
    mine = window_pooled(result, path)
    if mine is None:
        return []
    windows = mine[0]
    others = {k: d for k, d in ((k, paired(result, r, path, windows)) for k, r in full.items())
              if d is not None}
    if not others:
        return []
    shown = "; ".join(f"{k} {mine[1].value() - d.value:.3f} ({'a tie' if d.is_tie else 'differs'}: "
                      f"difference {d.value:+.3f}, 95 % interval [{d.low:+.3f}, {d.high:+.3f}])"
                      for k, d in others.items())
    ahead = [k for k, d in others.items() if not d.is_tie and d.value < 0]
    verdict = (f"it does not lead there ({', '.join(ahead)} score higher beyond noise)" if ahead
               else "no model scores higher beyond noise")
    return [f"On the same {len(windows)} window(s), CSI at 1 mm/h (mean over lead times): **{label}** "
            f"{mine[1].value():.3f}; {shown} — {verdict}."]


def series_rows(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float]) -> list[list[Any]]:
    """Every per-lead/mean score as rows [model, metric, variant, lead_min, value]."""
    rows: list[list[Any]] = []

    def walk(label: str, node: Any, path: list[str]) -> None:
        if not isinstance(node, Mapping) or (path and path[0] == "rapsd"):
            return
        if "mean" in node and "per_lead" in node:
            variant = "/".join(path[1:])
            rows.extend([label, path[0], variant, lead_minutes[i], v]
                        for i, v in enumerate(node["per_lead"] or []))
            rows.append([label, path[0], variant, "mean", node["mean"]])
            return
        for key, child in node.items():
            walk(label, child, [*path, key])

    for label, res in results.items():
        walk(label, res.get("scores", {}), [])
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])


def _spectra_rows(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float]) -> list[list[Any]]:
    rows = []
    for label, res in results.items():
        spec = lookup(res.get("scores", {}), ("rapsd",))
        if not spec:
            continue
        for i, (fc, ob) in enumerate(zip(spec["forecast"], spec["observed"], strict=True)):
            rows += [[label, lead_minutes[i], wl, fq, f, o]
                     for wl, fq, f, o in zip(spec["wavelength_km"], spec["freq_per_km"], fc, ob, strict=True)]
    return rows


# ----------------------------------------------------------------------------- the report


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
    _write_csv(folder / "metrics.csv", ["model", "metric", "variant", "lead_min", "value"],
               series_rows(ok, lead_minutes))
    _write_csv(folder / "spectra.csv",
               ["model", "lead_min", "wavelength_km", "freq_per_km", "power_forecast", "power_observed"],
               _spectra_rows(ok, lead_minutes))
    speed_rows = [[k, r["speed"]["seconds_per_forecast"], r["speed"]["seconds_per_forecast_warm"],
                   r["speed"]["first_call_s"], r["speed"]["members"], r["speed"]["batch_size"],
                   r["speed"]["n_forecasts"], r["speed"]["device_name"]] for k, r in ok.items()]
    speed_header = ["model", "s/forecast", "s/forecast (after 1st call)", "1st call s", "members",
                    "batch", "forecasts", "device"]
    _write_csv(folder / "speed.csv", speed_header, speed_rows)
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
    (folder / "report.md").write_text(doc.markdown())
    (folder / "report.html").write_text(doc.html())
    return {name: folder / name for name in ("report.md", "report.html", "metrics.json", "metrics.csv",
                                             "spectra.csv", "speed.csv")}
