"""What a forecast reads from a rain store: the input frames of an issue time, and their checks.

Shared by the batch job (``nowcast forecast``) and the operational cycle (:mod:`nowcast.ops.cycle`):
issue time = valid time of the newest input frame; a forecast needs its ``n_in`` frames at the
store's time step, each holding some radar data in the forecast window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # xarray is imported by the functions that need it: `--help` stays fast
    import xarray as xr


class ForecastInputError(ValueError):
    """The inputs of a forecast are missing or inconsistent (message names what is wrong)."""


def parse_crop(spec: str | None, height: int, width: int) -> tuple[slice, slice]:
    """'y0,x0,h,w' | 'size' | 'h,w' (centred) -> (row slice, column slice) inside the frame."""
    if not spec:
        return slice(0, height), slice(0, width)
    try:
        vals = [int(v) for v in str(spec).split(",")]
    except ValueError:
        raise ForecastInputError(
            f"--crop must be integers 'y0,x0,h,w', 'size' or 'h,w', got {spec!r}"
        ) from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) == 2:
        h, w = vals
        vals = [(height - h) // 2, (width - w) // 2, h, w]
    if len(vals) != 4:
        raise ForecastInputError(f"--crop takes 1, 2 or 4 integers, got {spec!r}")
    y0, x0, h, w = vals
    if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise ForecastInputError(f"--crop {spec!r} does not fit in the {height}x{width} store grid")
    return slice(y0, y0 + h), slice(x0, x0 + w)


def parse_time(text: str) -> np.datetime64:
    try:
        return np.datetime64(text.strip().rstrip("Zz"), "s")
    except ValueError:
        raise ForecastInputError(f"cannot read time {text!r} (use ISO, e.g. 2016-07-11T16:00)") from None


def input_times(issue: np.datetime64, n_in: int, step: np.timedelta64) -> np.ndarray:
    """The ``n_in`` frame times ending at ``issue``, oldest first."""
    return np.datetime64(issue, "s") - step * np.arange(n_in - 1, -1, -1)


def missing_inputs(
    store_times: np.ndarray, issue: np.datetime64, n_in: int, step: np.timedelta64
) -> list[str]:
    """ISO strings of the input frames of ``issue`` that are not in the store."""
    have = set(store_times.astype("datetime64[s]").tolist())
    need = input_times(issue, n_in, step)
    return [f"{t}Z" for t in need if t.tolist() not in have]


def frames_without_data(ds: xr.Dataset, times: set[Any], rows: slice, cols: slice) -> set[Any]:
    """Those of ``times`` (``datetime`` of frames in the store) that hold no radar data at all in the
    forecast window (all NaN): the forecast's coverage is where every input frame has data, so one
    such frame makes the whole forecast NaN."""
    if not times:
        return set()
    ordered = sorted(times)
    from nowcast.schema import RAIN

    frames = ds[RAIN].sel(time=np.array(ordered, dtype="datetime64[ns]")).isel(y=rows, x=cols)
    empty = frames.isnull().all(("y", "x")).values
    return {t for t, e in zip(ordered, empty, strict=True) if e}


def store_description(ds: xr.Dataset, path: Path, step: np.timedelta64) -> dict[str, Any]:
    """``describe_store`` of the opened store, with its path and the step :func:`timestep` found
    (a store without a ``timestep_minutes`` attribute gets it from its frames' times)."""
    from nowcast.data.store import describe_store

    return {**describe_store(ds), "path": str(path), "timestep_minutes": step / np.timedelta64(1, "m")}
