"""Quicklook images of a forecast: a PNG panel and an animated GIF, on a rain-rate colour scale.

Both show the ensemble mean (or one member) of a forecast dataset from :mod:`nowcast.io.cf`,
next to the last observed frame when it is given. Rendering uses matplotlib's Agg backend
(no display or pyplot state needed); the GIF is assembled with pillow.
"""

from __future__ import annotations

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


def forecast_field(ds: xr.Dataset, field: str = "mean") -> xr.DataArray:
    """(lead_time, y, x) mm/h: the ensemble mean (``"mean"``) or member ``"member<i>"``."""
    rain = ds[RAIN]
    if field == "mean":
        return rain.mean("member", skipna=False)
    if field.startswith("member"):
        return rain.isel(member=int(field[len("member"):] or 0))
    raise ValueError(f"field must be 'mean' or 'member<i>', got {field!r}")


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


def _draw(ax, frame: np.ndarray, title: str):
    cmap, norm = rain_colour_scale()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return ax.imshow(frame, cmap=cmap, norm=norm, interpolation="nearest")


def _colorbar(fig, image, axes) -> None:
    cbar = fig.colorbar(image, ax=list(axes), shrink=0.8, extend="max", ticks=RAIN_LEVELS)
    cbar.set_label("rain rate (mm/h)")


def _lead_label(lead: np.timedelta64) -> str:
    return f"+{int(lead / np.timedelta64(1, 'm'))} min"


def write_png(
    ds: xr.Dataset,
    path: str | Path,
    last_observed: np.ndarray | None = None,
    field: str = "mean",
    leads: Sequence[int] | None = None,
    ncols: int = 4,
) -> Path:
    """PNG panel: the last observed frame (if given, (H, W) mm/h) then the chosen lead times.

    ``leads``: 0-based lead-time indices; default about six spread over the forecast.
    """
    rain = forecast_field(ds, field)
    n_lead = rain.sizes["lead_time"]
    if leads is None:
        leads = sorted(set(np.linspace(0, n_lead - 1, min(n_lead, 6)).round().astype(int).tolist()))
    frames = [] if last_observed is None else [(np.asarray(last_observed), "observed")]
    frames += [(rain.isel(lead_time=i).values, _lead_label(rain.lead_time.values[i])) for i in leads]
    fig, axes = _figure(len(frames), min(ncols, len(frames)))
    image = None
    for ax, (frame, title) in zip(axes, frames, strict=False):
        image = _draw(ax, frame, title)
    _colorbar(fig, image, axes[: len(frames)])
    issue = np.datetime_as_string(ds.forecast_reference_time.values, unit="m")
    fig.suptitle(f"{ds.attrs.get('model', '')} {field}, issued {issue}Z", fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=90)
    return path


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
    frames += [(rain.values[i], _lead_label(lead)) for i, lead in enumerate(rain.lead_time.values)]
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
