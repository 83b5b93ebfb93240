"""The report's findings, generated from the numbers: who leads on each key metric and by how much.

Every lead the findings state comes with a 95 % paired bootstrap interval over the windows
(:mod:`nowcast.evaluation.bootstrap`), computed from each model's per-window sums; a lead that
noise could reverse is called a tie. Models scored on a subset of the windows are compared with
the others on that subset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nowcast.evaluation.bootstrap import Difference, Pooled, paired_difference, pooled_from_counts
from nowcast.evaluation.document import fmt
from nowcast.evaluation.plots import lookup

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


#: summary metrics without a per-window decomposition, whose leads carry no bootstrap interval
SET_LEVEL = {("fid",), ("ralsd",)}


DIRECTION_TEXT = {"min": "lower is better", "max": "higher is better", "one": "1 is best"}


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
