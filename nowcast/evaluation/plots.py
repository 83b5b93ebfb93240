"""Figures of an evaluation report (matplotlib Agg, no pyplot state; small palette PNGs and a GIF).

Every function takes the per-model results written by :mod:`nowcast.evaluation.runner`
(``{label: {"scores": ScoreSuite.compute(), ...}}``, only successful models) and a path.
Rain maps use the quicklook colour scale of :mod:`nowcast.io.quicklook` (grey = no coverage).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.fsutil import atomic_write
from nowcast.io.quicklook import RAIN_LEVELS, rain_colour_scale

#: (title, path into the scores dict) of the panels of the metric-vs-lead-time figure
LEAD_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("MSE (mm/h)²", ("mse_mm_h",)), ("PSNR (dB, pixel scale)", ("psnr",)), ("SSIM", ("ssim",)),
    ("CSI 1 mm/h", ("csi", "1.0")), ("CSI 4 mm/h", ("csi", "4.0")),
    ("CSI 4 mm/h, max-pool 16", ("csi_pool16", "4.0")),
    ("FSS 1 mm/h, 16 px", ("fss", "1.0", "16")), ("CRPS (mm/h)", ("crps",)), ("RALSD (dB)", ("ralsd",)),
    ("LPIPS", ("lpips",)),
)


def lookup(scores: Mapping[str, Any], path: Sequence[str]) -> Any:
    """``scores[path[0]][path[1]]...`` or None if any key is missing."""
    node: Any = scores
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))


def save_png(fig: Any, path: str | Path, dpi: int = 80) -> Path:
    """Save ``fig`` as a 256-colour (palette) optimised PNG: a fraction of an RGB PNG's size."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    png = io.BytesIO()
    img.save(png, format="png", optimize=True)
    atomic_write(path, png.getvalue())
    return Path(path)


def _styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    import matplotlib as mpl

    colours = mpl.colormaps["tab10"].colors
    marks = "os^vDP*"  # 7 markers against 10 colours: no two of the first 70 models look alike
    return {lab: {"color": colours[i % 10], "marker": marks[i % len(marks)], "markersize": 3, "lw": 1.3}
            for i, lab in enumerate(labels)}


def plot_lead_times(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                    path: str | Path) -> Path | None:
    """Grid of metric-vs-lead-time panels, one line per model (panels without data are left out)."""
    panels = [(t, p) for t, p in LEAD_PANELS
              if any(lookup(r["scores"], (*p, "per_lead")) for r in results.values())]
    if not panels:
        return None
    ncols = 3
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(nrows, ncols, 4.0 * ncols, 2.8 * nrows + 0.6)
    style = _styles(list(results))
    for ax, (title, p) in zip(axes.ravel(), panels, strict=False):
        for label, res in results.items():
            vals = lookup(res["scores"], (*p, "per_lead"))
            if vals:
                y = np.array([np.nan if v is None else v for v in vals], dtype=float)
                ax.plot(lead_minutes[: len(y)], y, label=label, **style[label])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    return save_png(fig, path)


def plot_csi_thresholds(results: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path | None:
    """CSI (mean over lead times) against threshold: plain and after each max-pooling."""
    first = next(iter(results.values()))["scores"]
    tables = [k for k in ("csi", *sorted(k for k in first if k.startswith("csi_pool"))) if k in first]
    if not tables:
        return None
    fig, axes = _figure(1, len(tables), 4.0 * len(tables), 3.3)
    style = _styles(list(results))
    for ax, key in zip(axes.ravel(), tables, strict=True):
        for label, res in results.items():
            table = res["scores"].get(key, {})
            thr = sorted(table, key=float)
            y = [np.nan if table[t]["mean"] is None else table[t]["mean"] for t in thr]
            ax.plot([float(t) for t in thr], y, label=label, **style[label])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("threshold (mm/h)", fontsize=8)
        ax.set_title("CSI" if key == "csi" else f"CSI, max-pool {key[len('csi_pool'):]} px", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    return save_png(fig, path)


def plot_spectra(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                 path: str | Path, leads: Sequence[int] | None = None) -> Path | None:
    """Radially averaged power spectra at a few lead times (index ``leads``): observed vs models."""
    have = {k: r["scores"]["rapsd"] for k, r in results.items() if lookup(r["scores"], ("rapsd", "forecast"))}
    if not have:
        return None
    n_lead = len(next(iter(have.values()))["forecast"])
    if leads is None:  # first, middle and last lead time
        leads = sorted({0, max(0, n_lead // 2 - 1), n_lead - 1})
    fig, axes = _figure(1, len(leads), 4.0 * len(leads), 3.4)
    style = _styles(list(results))
    for ax, li in zip(axes.ravel(), leads, strict=True):
        ref = next(iter(have.values()))
        wl = np.array([np.nan if v is None else v for v in ref["wavelength_km"]], dtype=float)
        ok = np.isfinite(wl)
        obs = np.array([np.nan if v is None else v for v in ref["observed"][li]], dtype=float)
        ax.loglog(wl[ok], obs[ok], color="k", lw=2, label="observed")
        for label, spec in have.items():
            y = np.array([np.nan if v is None else v for v in spec["forecast"][li]], dtype=float)
            ax.loglog(wl[ok], y[ok], label=label, **{**style[label], "marker": None})
        ax.invert_xaxis()
        ax.set_xlabel("wavelength (km)", fontsize=8)
        ax.set_title(f"power spectrum, +{lead_minutes[li]:g} min", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), fontsize=8)
    return save_png(fig, path)


def _rain(ax: Any, frame: np.ndarray, mask: np.ndarray, title: str) -> Any:
    cmap, norm = rain_colour_scale()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    return ax.imshow(np.where(mask, frame.astype(np.float32), np.nan), cmap=cmap, norm=norm,
                     interpolation="nearest")


def _colorbar(fig: Any, image: Any, axes: Any) -> None:
    cbar = fig.colorbar(image, ax=list(np.ravel(axes)), shrink=0.6, extend="max", ticks=RAIN_LEVELS)
    cbar.set_label("rain rate (mm/h)", fontsize=8)
    cbar.ax.tick_params(labelsize=7)


def panel_leads(n_lead: int, k: int = 4) -> list[int]:
    """Up to ``k`` lead indices spread to the last one (e.g. 12 leads -> 0, 3, 7, 11)."""
    return sorted({int(round(x)) for x in np.linspace(0, n_lead - 1, min(k, n_lead))})


def plot_case(case: Mapping[str, np.ndarray], forecasts: Mapping[str, np.ndarray],
              lead_minutes: Sequence[float], title: str, path: str | Path) -> Path:
    """Panel of one case: past frames, observed future and each model's member 0 at a few leads.

    ``case``: past (T_in, H, W), future (T, H, W) mm/h, mask (H, W); ``forecasts``: label ->
    member 0 (T, H, W) mm/h.
    """
    leads = panel_leads(len(case["future"]))
    ncols = max(len(leads), len(case["past"]))
    fig, axes = _figure(2 + len(forecasts), ncols, 1.45 * ncols + 1.0, 1.5 * (2 + len(forecasts)) + 0.4)
    n_past = len(case["past"])
    step = lead_minutes[0] if lead_minutes else 5.0
    rows = [("past", [(case["past"][i], f"past {-(n_past - 1 - i) * step:g} min") for i in range(n_past)]),
            ("observed", [(case["future"][j], f"observed +{lead_minutes[j]:g}") for j in leads])]
    rows += [(lab, [(fc[j], f"{lab}\n+{lead_minutes[j]:g}") for j in leads]) for lab, fc in forecasts.items()]
    image = _fill_grid(axes, [frames for _, frames in rows], case["mask"], ncols)
    _colorbar(fig, image, axes)
    fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def _fill_grid(axes: np.ndarray, grid: list[list[tuple[np.ndarray, str]]], mask: np.ndarray, ncols: int):
    """Draw ``grid[row][col] = (field mm/h, title)`` into ``axes``; hide unused cells. Returns the
    last image (for the colour bar)."""
    image = None
    for r, frames in enumerate(grid):
        for c in range(ncols):
            if c < len(frames):
                image = _rain(axes[r, c], frames[c][0], mask, frames[c][1])
            else:
                axes[r, c].set_visible(False)
    return image


def plot_members(case: Mapping[str, np.ndarray], members: Mapping[str, np.ndarray],
                 means: Mapping[str, np.ndarray], lead: int, lead_min: float, title: str,
                 path: str | Path) -> Path | None:
    """Ensemble members side by side at lead index ``lead``: one row per ensemble model,
    members then the ensemble mean; the observation first. ``members``: label -> (M, H, W) and
    ``means``: label -> (H, W), both at that lead, mm/h."""
    ens = {k: v for k, v in members.items() if len(v) > 1}
    if not ens:
        return None
    ncols = 1 + max(len(v) for v in ens.values()) + 1
    fig, axes = _figure(len(ens), ncols, 1.45 * ncols + 1.0, 1.55 * len(ens) + 0.4)
    grid = [[(case["future"][lead], "observed"), *((m[i], f"{lab}\nmember {i}") for i in range(len(m))),
             (means[lab], f"{lab}\nensemble mean")] for lab, m in ens.items()]
    image = _fill_grid(axes, grid, case["mask"], ncols)
    _colorbar(fig, image, axes)
    fig.suptitle(f"{title}, +{lead_min:g} min", fontsize=9)
    return save_png(fig, path)


def write_case_gif(case: Mapping[str, np.ndarray], forecasts: Mapping[str, np.ndarray],
                   lead_minutes: Sequence[float], title: str, path: str | Path,
                   ms_per_frame: int = 600) -> Path:
    """Animated GIF over lead time: observed and each model's member 0 side by side."""
    from PIL import Image

    fields = [("observed", case["future"]), *forecasts.items()]
    ncols = min(5, len(fields))
    nrows = -(-len(fields) // ncols)
    frames = []
    for j, minute in enumerate(lead_minutes[: len(case["future"])]):
        fig, axes = _figure(nrows, ncols, 1.7 * ncols + 0.9, 1.8 * nrows + 0.4)
        image = None
        for k, ax in enumerate(axes.ravel()):
            if k < len(fields):
                image = _rain(ax, fields[k][1][j], case["mask"], fields[k][0])
            else:
                ax.set_visible(False)
        _colorbar(fig, image, axes)
        fig.suptitle(f"{title}  +{minute:g} min", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=60)
        buf.seek(0)
        frames.append(Image.open(buf).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0,
                   optimize=True)
    return Path(path)


# ----------------------------------------------------------------------------- ensemble scores

#: reliability-diagram bins with fewer pixels than this are not drawn (their frequency is noise)
MIN_BIN_SAMPLES = 100


def ensembles(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``{label: scores["ensemble"]}`` of the models scored as ensembles (deterministic ones have none)."""
    return {k: r["scores"]["ensemble"] for k, r in results.items()
            if lookup(r["scores"], ("ensemble", "members"))}


def group_titles(ens: Mapping[str, Any], lead_minutes: Sequence[float]) -> list[str]:
    """'+5–20 min' style names of an ensemble result's lead-time groups."""
    return [f"+{lead_minutes[a]:g}–{lead_minutes[b - 1]:g} min" for a, b in ens["lead_groups"]]


def plot_rank_histograms(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                         path: str | Path) -> Path | None:
    """One panel per ensemble model: the rank histogram over all lead times (bars) and per lead-time
    group (lines), against the flat histogram of a consistent ensemble."""
    have = ensembles(results)
    if not have:
        return None
    ncols = min(3, len(have))
    nrows = -(-len(have) // ncols)
    fig, axes = _figure(nrows, ncols, 3.6 * ncols, 2.7 * nrows + 0.3)
    for ax, (label, ens) in zip(axes.ravel(), have.items(), strict=False):
        rh = ens["rank_histogram"]
        total = np.asarray(rh["counts_all"], dtype=float)
        ranks = np.arange(1, len(total) + 1)
        ax.bar(ranks, total / max(total.sum(), 1), color="0.75", edgecolor="0.4", label="all leads")
        for title, counts in zip(group_titles(ens, lead_minutes), rh["counts"], strict=True):
            c = np.asarray(counts, dtype=float)
            ax.plot(ranks, c / max(c.sum(), 1), marker="o", markersize=2, lw=1, label=title)
        ax.axhline(1 / len(total), color="k", ls="--", lw=0.8)
        ri = rh.get("reliability_index")
        ax.set_title(f"{label}\nreliability index {ri:.2f}" if ri is not None else label, fontsize=8)
        ax.set_xlabel("rank of the observation", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(have):]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=7)
    return save_png(fig, path)


def _probability_grid(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                      path: str | Path, key: str, title: str, xlabel: str, ylabel: str,
                      curve: Any) -> Path | None:
    """One panel per threshold (rows) and lead-time group (columns) of ``scores["ensemble"][key]``,
    a line per ensemble model: ``curve(entry) -> (x, y)`` of one threshold and group."""
    have = ensembles(results)
    if not have:
        return None
    first = next(iter(have.values()))
    thresholds, titles = list(first[key]), group_titles(first, lead_minutes)
    fig, axes = _figure(len(thresholds), len(titles), 3.2 * len(titles), 3.0 * len(thresholds) + 0.4)
    style = _styles(list(results))
    for i, thr in enumerate(thresholds):
        for g, group in enumerate(titles):
            ax = axes[i, g]
            ax.plot([0, 1], [0, 1], color="k", ls="--", lw=0.8)
            for label, ens in have.items():
                x, y = curve(ens[key][thr][g])
                if len(x):
                    ax.plot(x, y, label=label, **style[label])
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(title.format(threshold=float(thr), group=group), fontsize=8)
            ax.set_xlabel(xlabel, fontsize=7)
            ax.set_ylabel(ylabel, fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=7)
    return save_png(fig, path)


def plot_reliability(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                     path: str | Path) -> Path | None:
    """Reliability diagrams: one row per threshold, one column per lead-time group, a line per model."""

    def curve(diag: Mapping[str, Any]) -> tuple[list[float], list[float]]:
        keep = [j for j, n in enumerate(diag["samples"])
                if n >= MIN_BIN_SAMPLES and diag["forecast_probability"][j] is not None]
        return [diag["forecast_probability"][j] for j in keep], [diag["observed_frequency"][j] for j in keep]

    return _probability_grid(results, lead_minutes, path, "reliability", "P(R ≥ {threshold:g} mm/h), {group}",
                             "forecast probability", "observed frequency", curve)


def plot_roc(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
             path: str | Path) -> Path | None:
    """ROC curves: one row per threshold, one column per lead-time group, a line per model."""

    def curve(roc: Mapping[str, Any]) -> tuple[list[float], list[float]]:
        pts = [(x, y) for x, y in zip(roc["pofd"], roc["pod"], strict=True)
               if x is not None and y is not None]
        return [x for x, _ in pts], [y for _, y in pts]

    return _probability_grid(results, lead_minutes, path, "roc", "R ≥ {threshold:g} mm/h, {group}",
                             "false alarm rate (POFD)", "hit rate (POD)", curve)


def plot_spread_skill(results: Mapping[str, Mapping[str, Any]], lead_minutes: Sequence[float],
                      path: str | Path) -> Path | None:
    """Ensemble spread (dashed) and RMSE of the ensemble mean (solid) per lead time, and their
    consistency ratio (1 = spread matches the error; below 1 = under-dispersive)."""
    have = ensembles(results)
    if not have:
        return None
    fig, axes = _figure(1, 2, 9.0, 3.4)
    style = _styles(list(results))
    for label, ens in have.items():
        ss = ens["spread_skill"]
        st = {**style[label], "marker": None}
        x = lead_minutes[: len(ss["rmse"])]
        as_array = lambda v: np.array([np.nan if a is None else a for a in v], dtype=float)  # noqa: E731
        axes[0, 0].plot(x, as_array(ss["rmse"]), label=label, **st)
        axes[0, 0].plot(x, as_array(ss["spread"]), ls="--", **{k: v for k, v in st.items() if k != "lw"})
        axes[0, 1].plot(x, as_array(ss["ratio"]), label=label, **style[label])
    axes[0, 0].set_title("RMSE of the ensemble mean (solid) and spread (dashed), mm/h", fontsize=9)
    axes[0, 1].axhline(1.0, color="k", ls="--", lw=0.8)
    axes[0, 1].set_title("spread / RMSE, scaled so that a consistent ensemble scores 1", fontsize=9)
    for ax in axes.ravel():
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    return save_png(fig, path)
