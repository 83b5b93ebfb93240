"""Quicklook images of a forecast: a PNG panel and an animated GIF, on a rain-rate colour scale.

Both show the ensemble mean (or one member) of a forecast dataset from :mod:`nowcast.io.cf`,
next to the last observed frame when it is given, with lead and valid time (UTC) on every
panel and the grid's km axes; the PNG adds, for an ensemble, the probability of exceeding
1 mm/h at the same leads. Rendering uses matplotlib's Agg backend
(no display or pyplot state needed); the GIF is assembled with pillow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from nowcast.schema import RAIN

#: colour-scale bounds (mm/h): below the first is dry (white), NaN (no coverage) is grey
RAIN_LEVELS = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
_COLOURS = ("#c6dbef", "#6baed6", "#2171b5", "#41ab5d", "#ffff33", "#fe9929", "#e31a1c", "#ae017e", "#3f007d")
_NO_COVERAGE = "#bdbdbd"


def rain_colour_scale():
    """``(cmap, norm)`` of the rain-rate scale used by every quicklook."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(_COLOURS).with_extremes(under="white", over=_COLOURS[-1], bad=_NO_COVERAGE)
    return cmap, BoundaryNorm(RAIN_LEVELS, cmap.N)


def field_member(field: str, members: int) -> int | None:
    """The 0-based member that ``field`` shows (``"member<i>"``; ``"member"`` is member 0), None for
    the ensemble mean (``"mean"``). Raises ``ValueError`` for any other field and for a member that a
    forecast of ``members`` members does not have."""
    if field == "mean":
        return None
    match = re.fullmatch(r"member(\d*)", field)
    if match is None:
        raise ValueError(f"field must be 'mean' or 'member<i>', got {field!r}")
    index = int(match.group(1) or 0)
    if index >= members:
        raise ValueError(f"{field!r} is not a member of a forecast of {members} member(s) "
                         f"(member0..member{members - 1}); use 'mean' or one of them")
    return index


def forecast_field(ds: xr.Dataset, field: str = "mean") -> xr.DataArray:
    """(lead_time, y, x) mm/h: the ensemble mean (``"mean"``) or member ``"member<i>"``
    (see :func:`field_member`)."""
    rain = ds[RAIN]
    index = field_member(field, rain.sizes["member"])
    return rain.mean("member", skipna=False) if index is None else rain.isel(member=index)


def _figure(n_panels: int, ncols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nrows = int(np.ceil(n_panels / ncols))
    fig = Figure(figsize=(2.6 * ncols + 0.8, 2.6 * nrows + 0.3), layout="constrained")
    FigureCanvasAgg(fig)  # Agg rendering without pyplot or a display
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _extent_km(ds: xr.Dataset) -> tuple[list[float], str]:
    """imshow ``extent`` (km) and ``origin`` of the dataset's projected grid (pixel edges)."""
    x, y = ds["x"].values / 1000.0, ds["y"].values / 1000.0
    dx = abs(x[1] - x[0]) if len(x) > 1 else 1.0
    dy = abs(y[1] - y[0]) if len(y) > 1 else 1.0
    extent = [x.min() - dx / 2, x.max() + dx / 2, y.min() - dy / 2, y.max() + dy / 2]
    return [float(v) for v in extent], ("upper" if len(y) < 2 or y[0] > y[-1] else "lower")


def _draw(ax, frame: np.ndarray, title: str, extent: list[float] | None = None, origin: str = "upper",
          probability: bool = False):
    if probability:
        from matplotlib import colormaps

        cmap, norm = colormaps["Blues"].with_extremes(bad=_NO_COVERAGE), None
        kw = {"vmin": 0.0, "vmax": 1.0}
    else:
        (cmap, norm), kw = rain_colour_scale(), {}
    ax.set_title(title, fontsize=8)
    if extent is None:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.tick_params(labelsize=6)
    return ax.imshow(frame, cmap=cmap, norm=norm, interpolation="nearest", extent=extent, origin=origin, **kw)


def _colorbar(fig, image, axes, label: str = "rain rate (mm/h)", ticks: Sequence[float] | None = RAIN_LEVELS,
              extend: str = "max") -> None:
    cbar = fig.colorbar(image, ax=list(axes), shrink=0.8, extend=extend, ticks=ticks)
    cbar.set_label(label)


def _lead_label(lead: np.timedelta64) -> str:
    return f"+{int(lead / np.timedelta64(1, 'm'))} min"


def _lead_and_valid(rain: xr.DataArray, i: int) -> str:
    """"+10 min, valid 16:10Z" for lead index ``i``."""
    return f"{_lead_label(rain.lead_time.values[i])}, valid {_hhmm(rain.time.values[i])}"


def _hhmm(t: np.datetime64) -> str:
    return f"{np.datetime_as_string(np.datetime64(t, 'm'), unit='m')[11:]}Z"


def regular_leads(n_lead: int, max_panels: int = 6) -> list[int]:
    """0-based lead indices at a regular spacing that ends at the last lead (12 leads, 6 panels:
    +10, +20, ..., +60 min)."""
    step = int(np.ceil(n_lead / max_panels))
    return list(range(n_lead - 1, -1, -step))[::-1][-max_panels:]


#: the probability-of-exceedance row of an ensemble quicklook (mm/h)
PROBABILITY_THRESHOLD = 1.0


def quicklook_figure(
    ds: xr.Dataset,
    last_observed: np.ndarray | None = None,
    field: str = "mean",
    leads: Sequence[int] | None = None,
    axes_km: bool = True,
):
    """The PNG panel as a matplotlib Figure: the last observed frame (if given, (H, W) mm/h) then the
    chosen lead times of ``field``, each titled with its lead and valid time (UTC), on km axes; for an
    ensemble, a second row with the probability of at least :data:`PROBABILITY_THRESHOLD` mm/h.

    ``leads``: 0-based lead-time indices; default :func:`regular_leads`.
    """
    rain = forecast_field(ds, field)
    members = ds.sizes.get("member", 1)
    if leads is None:
        leads = regular_leads(rain.sizes["lead_time"])
    issue = ds.forecast_reference_time.values
    columns = ([] if last_observed is None else [(np.asarray(last_observed), f"observed {_hhmm(issue)}")])
    columns += [(rain.isel(lead_time=i).values, _lead_and_valid(rain, i)) for i in leads]
    ensemble = members > 1
    ncols = len(columns)
    fig, axes = _figure(ncols * (2 if ensemble else 1), ncols)
    extent, origin = _extent_km(ds) if axes_km else (None, "upper")
    image = None
    for ax, (frame, title) in zip(axes, columns, strict=False):
        image = _draw(ax, frame, title, extent, origin)
    _colorbar(fig, image, axes[:ncols])
    if ensemble:
        exceed = (ds[RAIN] >= PROBABILITY_THRESHOLD).mean("member").where(ds[RAIN].notnull().all("member"))
        first = 0 if last_observed is None else 1
        axes[ncols].set_visible(first == 0)
        prob_image = None
        for ax, i in zip(axes[ncols + first:], leads, strict=False):
            title = f"P(R ≥ {PROBABILITY_THRESHOLD:g} mm/h), {_lead_label(rain.lead_time.values[i])}"
            prob_image = _draw(ax, exceed.isel(lead_time=i).values, title, extent, origin, probability=True)
        _colorbar(fig, prob_image, axes[ncols + first:2 * ncols], label="probability", ticks=None,
                  extend="neither")
    if axes_km:
        for ax in axes[: len(axes)]:
            ax.set_xlabel("x (km)", fontsize=7)
            ax.set_ylabel("y (km)", fontsize=7)
    if members == 1:
        what = "deterministic forecast"
    else:
        what = f"{'ensemble mean' if field == 'mean' else field} of {members} members"
    fig.suptitle(f"{ds.attrs.get('model', '')}: {what}, issued {np.datetime_as_string(issue, unit='m')}Z",
                 fontsize=10)
    return fig


def write_png(
    ds: xr.Dataset,
    path: str | Path,
    last_observed: np.ndarray | None = None,
    field: str = "mean",
    leads: Sequence[int] | None = None,
) -> Path:
    """Save :func:`quicklook_figure` as a PNG."""
    path = Path(path)
    quicklook_figure(ds, last_observed, field, leads).savefig(path, dpi=90)
    return path


#: ``--quicklook`` choices -> the image kinds written beside a forecast file
QUICKLOOK_KINDS = {"none": (), "png": ("png",), "gif": ("gif",), "both": ("png", "gif")}


def write_quicklooks(ds: xr.Dataset, forecast_path: str | Path, kinds: Sequence[str],
                     last_observed: np.ndarray | None = None, field: str = "mean") -> list[Path]:
    """The quicklooks of ``kinds`` ("png", "gif") beside ``forecast_path`` (same name, their suffix);
    :class:`~nowcast.fsutil.WriteError` if one cannot be written (a full disk)."""
    import os

    from nowcast.fsutil import writing

    paths = []
    for kind in kinds:
        path = Path(forecast_path).with_suffix(f".{kind}")
        # drawn under a temporary name, then renamed: a reader never sees half an image
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.{kind}")
        try:
            with writing(path):
                (write_png if kind == "png" else write_gif)(ds, tmp, last_observed=last_observed, field=field)
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths


def write_gif(
    ds: xr.Dataset,
    path: str | Path,
    last_observed: np.ndarray | None = None,
    field: str = "mean",
    frame_ms: int = 400,
) -> Path:
    """Animated GIF: the last observed frame (if given) then every lead time."""
    from PIL import Image

    rain = forecast_field(ds, field)
    frames = [] if last_observed is None else [(np.asarray(last_observed), "observed")]
    frames += [(rain.values[i], _lead_and_valid(rain, i)) for i in range(rain.sizes["lead_time"])]
    issue = np.datetime_as_string(ds.forecast_reference_time.values, unit="m")
    fig, axes = _figure(1, 1)
    image = _draw(axes[0], frames[0][0], "")
    _colorbar(fig, image, axes[:1])
    fig.set_layout_engine("none")  # keep the layout of the first frame: same geometry, faster
    images = []
    for frame, title in frames:
        image.set_data(frame)
        axes[0].set_title(f"{ds.attrs.get('model', '')} {field} {title} (issued {issue}Z)", fontsize=9)
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).convert("P"))
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path
