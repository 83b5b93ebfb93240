"""The rain store's schema: one CF-conventions ``xarray.Dataset`` per radar grid.

Every store that ``nowcast ingest`` (or the synthetic-event generator) writes looks like::

    <xarray.Dataset>
    Dimensions:         (time, y, x)
    Coordinates:
        time            (time)   datetime64[ns]     frame valid time, UTC
        y               (y)      float64            projection_y_coordinate, m
        x               (x)      float64            projection_x_coordinate, m
    Data variables:
        rain_rate       (time, y, x) float32        mm h-1, NaN outside radar coverage
        crs             ()       int32              CF grid mapping (attributes from pyproj)
        source_file     (time)   <U                 provenance: raw file the frame came from
        rain_fraction   (time)   float32            fraction of covered pixels >= 0.5 mm/h
    Attributes: Conventions, title, source, product, conversion, pixel_size_m,
                timestep_minutes (measured from the frames' times), max_rain_rate_mm_h, history

Values are checked on the way in (ingest refuses a frame) and on the way out (evaluation refuses
a store) by one function, :func:`rain_value_problems` / :func:`check_rain_values`: NaN marks pixels
outside radar coverage; anything else non-finite, a negative rate, a rate above the ceiling
(``max_rain_rate_mm_h``, default :data:`MAX_RAIN_RATE_MM_H`) or a ``rain_fraction`` outside
[0, 1] is physically impossible and means a wrong conversion.

Reading and writing stores goes through this module so the names live in one place.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

RAIN = "rain_rate"
CRS = "crs"
SOURCE_FILE = "source_file"
RAIN_FRACTION = "rain_fraction"
#: threshold (mm/h) used for the per-frame ``rain_fraction`` summary
RAIN_FRACTION_THRESHOLD_MM_H = 0.5
CONVENTIONS = "CF-1.10"
#: default ceiling of a believable rain rate (mm/h); above it a frame is a wrong conversion
MAX_RAIN_RATE_MM_H = 500.0
#: the store attribute recording the ceiling its frames were checked against at ingest
MAX_RAIN_ATTR = "max_rain_rate_mm_h"


class StoreError(ValueError):
    """A store or a frame that does not follow the schema (wrong grid, bad times, ...)."""


class RainValueError(StoreError):
    """Rain values that cannot be real (non-finite, negative, above the ceiling, bad fraction)."""


def crs_attributes(crs: Any) -> dict[str, Any]:
    """CF grid-mapping attributes for anything ``pyproj.CRS.from_user_input`` accepts."""
    from pyproj import CRS as ProjCRS

    proj = ProjCRS.from_user_input(crs)
    attrs = proj.to_cf()
    attrs["crs_wkt"] = proj.to_wkt()
    # netCDF attributes cannot hold None or nested containers
    attrs = {k: v for k, v in attrs.items() if v is not None and not isinstance(v, dict)}
    return complete_grid_mapping(attrs)


def complete_grid_mapping(attrs: dict[str, Any]) -> dict[str, Any]:
    """Add the CF grid-mapping parameters pyproj's ``to_cf`` leaves out (a copy of ``attrs``).

    Polar stereographic with a standard parallel (variant B): CF requires
    ``latitude_of_projection_origin``, the pole (+90 or -90) on the standard parallel's side.
    Applied at ingest and again when writing files from stores ingested before.
    """
    attrs = dict(attrs)
    polar = attrs.get("grid_mapping_name") == "polar_stereographic"
    if polar and "latitude_of_projection_origin" not in attrs and "standard_parallel" in attrs:
        north = float(np.ravel(attrs["standard_parallel"])[0]) > 0
        attrs["latitude_of_projection_origin"] = 90.0 if north else -90.0
    return attrs


def latitude_longitude(crs_wkt: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon), each (len(y), len(x)) float32 degrees, of the projected grid ``x``, ``y`` (m) in
    ``crs_wkt``: the CF auxiliary coordinates that let tools place a field without parsing WKT.
    Cached per grid: a batch of forecasts on one grid transforms its pixels once (read-only arrays)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return _latitude_longitude(crs_wkt, x.tobytes(), y.tobytes())


@functools.lru_cache(maxsize=4)
def _latitude_longitude(crs_wkt: str, x: bytes, y: bytes) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    to_geo = Transformer.from_crs(ProjCRS.from_wkt(crs_wkt), "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(np.frombuffer(x), np.frombuffer(y))
    lon, lat = to_geo.transform(xx, yy)
    lat, lon = lat.astype(np.float32), lon.astype(np.float32)
    lat.flags.writeable = lon.flags.writeable = False
    return lat, lon


def rain_fraction(rain: np.ndarray) -> np.ndarray:
    """Fraction of covered (finite) pixels at or above 0.5 mm/h, per frame. ``rain``: (T, H, W)."""
    covered = np.isfinite(rain)
    n = covered.sum(axis=(-2, -1))
    wet = (np.nan_to_num(rain, nan=0.0) >= RAIN_FRACTION_THRESHOLD_MM_H).sum(axis=(-2, -1))
    return np.where(n > 0, wet / np.maximum(n, 1), 0.0).astype(np.float32)


def make_rain_dataset(
    rain: np.ndarray,
    time: Sequence[np.datetime64] | np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    crs: Any,
    source_files: Sequence[str],
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Build a schema-conforming dataset.

    Args:
        rain: (T, H, W) rain rate in mm/h, NaN outside coverage.
        time: (T,) valid times (UTC, naive datetime64).
        x, y: (W,), (H,) pixel-centre projected coordinates in metres.
        crs: anything pyproj understands (proj4 string, EPSG code, WKT).
        source_files: (T,) raw file name per frame (provenance).
        attrs: extra global attributes (source, product, conversion, ...).
    """
    rain = np.asarray(rain, dtype=np.float32)
    if rain.ndim != 3:
        raise StoreError(f"rain must be (time, y, x), got shape {rain.shape}")
    times = np.asarray(time, dtype="datetime64[ns]")
    if not (len(times) == rain.shape[0] == len(source_files)):
        raise StoreError("time, rain and source_files disagree on the number of frames")
    if rain.shape[1:] != (len(y), len(x)):
        raise StoreError(f"rain frame shape {rain.shape[1:]} != (len(y), len(x)) = {(len(y), len(x))}")
    dx = float(np.abs(np.diff(x[:2]))[0]) if len(x) > 1 else float("nan")
    ds = xr.Dataset(
        data_vars={
            RAIN: (
                ("time", "y", "x"),
                rain,
                {
                    "standard_name": "lwe_precipitation_rate",
                    "long_name": "rain rate",
                    "units": "mm h-1",
                    "grid_mapping": CRS,
                    "comment": "NaN outside radar coverage; rates below 0.1 mm/h set to 0",
                },
            ),
            CRS: ((), np.int32(0), crs_attributes(crs)),
            SOURCE_FILE: (("time",), np.asarray(source_files, dtype=str), {"long_name": "raw input file"}),
            RAIN_FRACTION: (
                ("time",),
                rain_fraction(rain),
                {
                    "long_name": f"fraction of covered pixels >= {RAIN_FRACTION_THRESHOLD_MM_H} mm/h",
                    "units": "1",
                },
            ),
        },
        coords={
            "time": ("time", times, {"standard_name": "time", "long_name": "valid time (UTC)"}),
            "y": ("y", np.asarray(y, dtype=np.float64),
                  {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
            "x": ("x", np.asarray(x, dtype=np.float64),
                  {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        },
        attrs={
            "Conventions": CONVENTIONS,
            "title": "radar rain-rate composite",
            "pixel_size_m": dx,
            "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} created by nowcast",
            **(attrs or {}),
        },
    )
    return ds


def grid_signature(ds: xr.Dataset) -> tuple:
    """What must match for two datasets to share a store: CRS and pixel-centre coordinates."""
    wkt = ds[CRS].attrs.get("crs_wkt", "")
    return (wkt, ds.sizes["y"], ds.sizes["x"],
            round(float(ds.x[0]), 3), round(float(ds.y[0]), 3),
            round(float(ds.x[-1]), 3), round(float(ds.y[-1]), 3))


def same_grid(a: tuple, b: tuple) -> bool:
    """Whether two :func:`grid_signature` s are one grid: the same size and corner pixel centres, and
    the same coordinate reference system, compared as such (pyproj), not as WKT text, which PROJ
    versions and writers word differently for one CRS (axis names, for one)."""
    return a[1:] == b[1:] and (a[0] == b[0] or same_crs(a[0], b[0]))


@functools.lru_cache(maxsize=32)
def same_crs(wkt_a: str, wkt_b: str) -> bool:
    """Whether two WKT texts define one CRS (axis order aside: stores keep x and y explicitly)."""
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError

    try:
        return ProjCRS.from_wkt(wkt_a).equals(ProjCRS.from_wkt(wkt_b), ignore_axis_order=True)
    except CRSError:
        return False


def validate_rain_dataset(ds: xr.Dataset) -> None:
    """Raise :class:`StoreError` naming every way ``ds`` breaks the schema."""
    problems = []
    for name in (RAIN, CRS):
        if name not in ds.variables:
            problems.append(f"missing variable {name!r}")
    for dim in ("time", "y", "x"):
        if dim not in ds.dims:
            problems.append(f"missing dimension {dim!r}")
    if not problems:
        if ds[RAIN].dims != ("time", "y", "x"):
            problems.append(f"{RAIN} dims are {ds[RAIN].dims}, expected ('time', 'y', 'x')")
        t = ds.time.values
        if len(t) > 1 and not (np.diff(t) > np.timedelta64(0, "ns")).all():
            problems.append("time is not strictly increasing (duplicate or unsorted frames)")
    if problems:
        raise StoreError("; ".join(problems))


def measured_timestep(times: np.ndarray | Sequence[np.datetime64]) -> np.timedelta64 | None:
    """The most common difference (s) between consecutive distinct frame times; None below two.

    A missing frame (a gap) or a stray extra frame does not change it; a tie goes to the shorter
    step.
    """
    t = np.unique(np.asarray(times, dtype="datetime64[s]"))
    if len(t) < 2:
        return None
    vals, counts = np.unique(np.diff(t), return_counts=True)
    return vals[np.argmax(counts)]


def timestep(ds: xr.Dataset) -> np.timedelta64:
    """The store's time step (s): its ``timestep_minutes``, else measured from the frame times."""
    if "timestep_minutes" in ds.attrs:
        return np.timedelta64(int(round(float(ds.attrs["timestep_minutes"]) * 60)), "s")
    step = measured_timestep(ds.time.values)
    if step is None:
        raise StoreError("cannot infer the time step of a store with one frame")
    return step


def frame_value_problems(rain: np.ndarray | xr.DataArray, fraction: np.ndarray | None = None,
                         ceiling: float = MAX_RAIN_RATE_MM_H) -> list[tuple[int, str]]:
    """(frame index, what is impossible) for each frame of ``rain`` that cannot be real.

    Args:
        rain: (T, H, W) rain rate in mm/h, NaN outside coverage (numpy, or a lazy DataArray
            with dims (time, y, x), read once frame by frame).
        fraction: (T,) ``rain_fraction`` (fraction of covered pixels, must lie in [0, 1]).
        ceiling: largest believable rain rate in mm/h.

    NaN is allowed (no coverage); +-inf, a negative rate, a rate above ``ceiling`` or a
    fraction outside [0, 1] is reported.
    """
    lo, hi = _frame_extremes(rain)
    frac = np.full(len(lo), np.nan) if fraction is None else np.asarray(fraction, dtype=np.float64)
    problems = []
    for i, (a, b, f) in enumerate(zip(lo, hi, frac, strict=True)):
        why = []
        if np.isinf(a) or np.isinf(b):
            why.append("non-finite rain rate (inf)")
        elif a < 0:
            why.append(f"negative rain rate (min {a:.3g} mm/h)")
        if np.isfinite(b) and b > ceiling:
            why.append(f"rain rate {b:.4g} mm/h above the ceiling of {ceiling:g} mm/h")
        if fraction is not None and not 0.0 <= f <= 1.0:
            why.append(f"rain_fraction {f:.3g} outside [0, 1]")
        if why:
            problems.append((i, ", ".join(why)))
    return problems


def _frame_extremes(rain: np.ndarray | xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (min, max) over covered pixels of (T, H, W) rain; NaN for a frame without any."""
    with warnings.catch_warnings():  # all-NaN frames (no coverage) are allowed
        warnings.simplefilter("ignore", RuntimeWarning)
        if isinstance(rain, xr.DataArray):
            stats = xr.Dataset({"lo": rain.min(("y", "x")), "hi": rain.max(("y", "x"))}).compute()
            return stats["lo"].values.astype(np.float64), stats["hi"].values.astype(np.float64)
        rain = np.asarray(rain, dtype=np.float64)
        return np.nanmin(rain, axis=(-2, -1)), np.nanmax(rain, axis=(-2, -1))


def check_rain_values(ds: xr.Dataset, ceiling: float | None = None) -> None:
    """Raise :class:`RainValueError` (one line) if any frame of ``ds`` holds impossible values.

    ``ceiling`` (mm/h) defaults to the store's ``max_rain_rate_mm_h``, else
    :data:`MAX_RAIN_RATE_MM_H`. Reads every frame once (lazily, frame by frame).
    """
    if ceiling is None:
        ceiling = float(ds.attrs.get(MAX_RAIN_ATTR, MAX_RAIN_RATE_MM_H))
    fraction = ds[RAIN_FRACTION].values if RAIN_FRACTION in ds.variables else None
    problems = frame_value_problems(ds[RAIN], fraction, ceiling)
    if problems:
        i, why = problems[0]
        t = np.datetime_as_string(ds.time.values[i], unit="s")
        name = f" ({ds[SOURCE_FILE].values[i]})" if SOURCE_FILE in ds.variables else ""
        raise RainValueError(f"{len(problems)} of {ds.sizes['time']} frames hold impossible rain values, "
                             f"first {t}{name}: {why}")
