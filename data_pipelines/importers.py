"""Read one raw radar file into a rain-rate frame on its projected grid (no torch here).

Orientation: frames are stored with row 0 = the northern edge (``yorigin="upper"``), so the ``y``
coordinate *decreases* along the rows; files whose importer reports ``yorigin="lower"`` are
flipped. ``x``/``y`` are pixel-centre projected coordinates in metres, from the importer's
``x1, x2, y1, y2`` (outer edges) and pixel sizes.

Units of the grid come from the projection (:func:`grid_in_metres`): a projection in km
(``+units=km``, or an Earth ellipsoid given in km such as KNMI's ``+a=6378.137``) has its
coordinates and pixel sizes scaled to metres and is rewritten in metres; an importer that reports
another unit than its projection is refused.

What a file holds: for sources with a ``read_product`` (KNMI) the file's own metadata choose the
importer arguments and the conversion, and its no-data codes become NaN (see
:func:`data_pipelines.sources.knmi_product`); otherwise the source's fixed arguments are used and
the unit the importer reports must fit the source.

Conversion to rain rate (mm/h), chosen by the unit the importer reports:

- ``dBZ``: Z-R relation ``Z = a R^b`` (default Marshall-Palmer a=200, b=1.6), so
  ``R = (10^(dBZ/10) / a)^(1/b)``;
- ``mm`` (accumulation over ``accutime`` minutes): ``R = mm / (accutime / 60)``;
- ``mm/h``: unchanged.

Then an optional integer coarsening (mean of ``f x f`` blocks, NaN if any pixel of the block is
NaN, trailing rows/columns that do not fill a block are dropped), and finally rates below
``RAIN_THRESHOLD_MM_H`` (0.1 mm/h) are set to 0. A frame whose native-resolution rates are
impossible (+-inf, negative, above the ceiling, see :func:`nowcast.schema.frame_value_problems`)
is refused with :class:`nowcast.schema.RainValueError`. NaN marks pixels outside radar coverage as each
importer reports them (KNMI: PV 255 "out of image" is NaN while PV 0 is the no-echo floor of
-32 dBZ, i.e. dry; FMI, MeteoSwiss, ODIM: the importer's NaN; BOM rainfields files carry no
coverage mask, so every pixel counts as covered).
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipelines.sources import ProductInfo, SourceSpec
from nowcast.schema import MAX_RAIN_RATE_MM_H, RainValueError, frame_value_problems
from nowcast.types import RAIN_THRESHOLD_MM_H

#: Marshall-Palmer Z = 200 R^1.6
MARSHALL_PALMER = (200.0, 1.6)

_UNIT_QUANTITY = {"dbz": "dbz", "mm": "accumulation", "mm/h": "rate"}


@dataclass
class Frame:
    """One converted radar frame.

    rain: (H, W) float32 rain rate in mm/h, NaN outside coverage, row 0 = north.
    x: (W,) pixel-centre x in metres (increasing); y: (H,) pixel-centre y in metres (decreasing).
    projection: proj4 string in metres. product: what the file holds, in its own words where it
    says (else the source's product). importer_kwargs: the importer call used.
    declared_step_minutes: the time step the file or source declares (an accumulation's
    accumulation time, else the source's ``timestep_minutes``).
    """

    rain: np.ndarray
    x: np.ndarray
    y: np.ndarray
    projection: str
    time: dt.datetime
    path: Path
    conversion: str
    institution: str
    product: str
    importer_kwargs: dict[str, Any]
    declared_step_minutes: float


def dbz_to_rain_rate(dbz: np.ndarray, zr: tuple[float, float] = MARSHALL_PALMER) -> np.ndarray:
    """Rain rate (mm/h) from reflectivity (dBZ) through ``Z = a R^b``; NaN stays NaN."""
    a, b = zr
    return (10.0 ** (np.asarray(dbz, dtype=np.float64) / 10.0) / a) ** (1.0 / b)


def coarsen_mean(field: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of a (H, W) field; NaN if any pixel of a block is NaN.

    Trailing rows/columns that do not fill a whole block are dropped: (H, W) -> (H//f, W//f).
    """
    if factor == 1:
        return field
    h, w = (s // factor * factor for s in field.shape)
    if h == 0 or w == 0:
        raise ValueError(f"coarsen factor {factor} is larger than the frame {field.shape}")
    blocks = field[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3))  # a NaN anywhere in the block propagates


def pixel_centres(metadata: dict, shape: tuple[int, int], factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x (W,), y (H,)) pixel-centre coordinates in metres for a frame stored north-up.

    ``shape`` is the native (H, W); with ``factor`` > 1 the centres of the coarsened blocks.
    Importers give ``x1, x2, y1, y2`` as the grid's outer edges (extent = n pixels), except
    ``bom_rf3``, which passes on the file's first and last pixel centres (extent = n - 1 pixels);
    both are recognised from the extent.
    """
    h, w = shape
    x1, x2, y1, y2 = (float(metadata[k]) for k in ("x1", "x2", "y1", "y2"))
    dx = float(metadata.get("xpixelsize") or (x2 - x1) / w)
    dy = float(metadata.get("ypixelsize") or (y2 - y1) / h)
    left_edge, top_edge = x1, y2
    for extent, size, n, axis in ((x2 - x1, dx, w, "x"), (y2 - y1, dy, h, "y")):
        if np.isclose(extent / size, n - 1, atol=0.01):  # centres, not edges
            if axis == "x":
                left_edge = x1 - dx / 2.0
            else:
                top_edge = y2 + dy / 2.0
        elif not np.isclose(extent / size, n, atol=0.01):
            raise ValueError(f"importer metadata disagree with the frame: {axis} extent {extent} m / "
                             f"pixel {size} m != {n} pixels")
    nx, ny = w // factor, h // factor
    x = left_edge + (np.arange(nx) * factor + factor / 2.0) * dx
    y = top_edge - (np.arange(ny) * factor + factor / 2.0) * dy
    return x, y


def to_rain_rate(field: np.ndarray, metadata: dict, zr: tuple[float, float]) -> tuple[np.ndarray, str]:
    """Rain rate (mm/h, float64) from an importer field, and a description of the conversion."""
    unit = str(metadata.get("unit", "")).lower()
    if unit == "dbz":
        return dbz_to_rain_rate(field, zr), f"reflectivity (dBZ) -> mm/h with Z = {zr[0]:g} R^{zr[1]:g}"
    if unit == "mm":
        accutime = float(metadata["accutime"])
        return (np.asarray(field, dtype=np.float64) / (accutime / 60.0),
                f"accumulation (mm) over {accutime:g} min divided by {accutime / 60.0:g} h")
    if unit == "mm/h":
        return np.asarray(field, dtype=np.float64), "rain rate (mm/h), unchanged"
    raise ValueError(f"unsupported unit {metadata.get('unit')!r} (expected dBZ, mm or mm/h)")


#: metadata entries that are lengths in the grid's unit
_GRID_LENGTHS = ("x1", "x2", "y1", "y2", "xpixelsize", "ypixelsize")
_LENGTH_UNITS_M = {"m": 1.0, "km": 1000.0}


def projection_unit_m(projection: str) -> tuple[float, float]:
    """(metres per unit of the projection's axes, metres per unit of its ellipsoid).

    ``+units=km`` gives (1000, 1); an Earth ellipsoid written in km (KNMI's ``+a=6378.137``, so
    every projected length comes out in km) gives (1, 1000); a projection in metres (1, 1).
    ``ValueError`` for an ellipsoid that is not the Earth in metres or km.
    """
    from pyproj import CRS as ProjCRS

    crs = ProjCRS.from_user_input(projection)
    axis = float(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0
    semi_major = crs.ellipsoid.semi_major_metre if crs.ellipsoid is not None else 6.4e6
    for metres, lo, hi in ((1.0, 6.0e6, 7.0e6), (1000.0, 6.0e3, 7.0e3)):
        if lo < semi_major < hi:
            return axis, metres
    raise ValueError(f"projection {projection!r}: an ellipsoid of semi-major axis {semi_major:g} m is "
                     "not the Earth in metres or km")


def _scale_proj_lengths(projection: str, factor: float) -> str:
    """``projection`` with its ellipsoid (a, b, R) and false easting/northing times ``factor``."""
    out = []
    for token in projection.split():
        key, _, value = token.lstrip("+").partition("=")
        if key in ("a", "b", "R", "x_0", "y_0") and value:
            token = f"+{key}={float(value) * factor:.12g}"
        out.append(token)
    return " ".join(out)


def projection_in_metres(projection: str) -> str:
    """``projection`` rewritten so that its projected coordinates are in metres (see
    :func:`projection_unit_m`); unchanged when they already are."""
    axis, ellipsoid = projection_unit_m(projection)
    if ellipsoid != 1.0:
        projection = _scale_proj_lengths(projection, ellipsoid)
    if axis != 1.0:
        kept = [t for t in projection.split() if t.lstrip("+").partition("=")[0] not in ("units", "to_meter")]
        projection = " ".join([*kept, "+units=m"])
    if projection_unit_m(projection) != (1.0, 1.0):
        raise ValueError(f"cannot express projection {projection!r} in metres")
    return projection


def grid_in_metres(metadata: dict) -> dict:
    """The importer's metadata with ``x1, x2, y1, y2`` and pixel sizes in metres and the
    projection rewritten in metres.

    The unit is the projection's; the unit the importer reports (``cartesian_unit``) must agree,
    else ``ValueError`` (an ambiguous grid is refused rather than stored at the wrong scale).
    """
    projection = str(metadata["projection"]).strip()
    axis, ellipsoid = projection_unit_m(projection)
    factor = axis * ellipsoid
    unit = str(metadata.get("cartesian_unit") or "m").lower()
    if _LENGTH_UNITS_M.get(unit) != factor:
        raise ValueError(f"the importer reports x/y in {unit!r} but projection {projection!r} has "
                         f"{factor:g} m units; refusing an ambiguous grid")
    if factor == 1.0:
        return metadata
    scaled = {k: float(metadata[k]) * factor for k in _GRID_LENGTHS if metadata.get(k) is not None}
    return {**metadata, **scaled, "projection": projection_in_metres(projection), "cartesian_unit": "m"}


@functools.cache
def _importer(name: str):
    from pysteps.io import get_method

    return get_method(name, "importer")


def _mask_nodata(field: np.ndarray, product: ProductInfo) -> np.ndarray:
    """NaN where ``field`` holds one of the product's no-data values (within a quarter count)."""
    for value in product.nodata:
        field[np.abs(field - value) <= product.resolution / 4.0] = np.nan
    return field


def read_frame(path: str | Path, spec: SourceSpec, zr: tuple[float, float] = MARSHALL_PALMER,
               coarsen: int = 1, max_rain_mm_h: float = MAX_RAIN_RATE_MM_H) -> Frame:
    """Read ``path`` with ``spec``'s pysteps importer and convert it (see the module docstring).

    ``max_rain_mm_h``: ceiling of a believable rain rate (mm/h), checked at native resolution.
    Raises whatever the importer raises for an unreadable file, ``ValueError`` for a file whose
    product or unit does not fit ``spec`` or whose metadata disagree with its data, and
    :class:`nowcast.schema.RainValueError` for impossible rain values.
    """
    path = Path(path)
    if coarsen < 1:
        raise ValueError(f"coarsen must be a positive integer, got {coarsen}")
    time = spec.valid_time(path)
    product = spec.read_product(path) if spec.read_product is not None else None
    kwargs = {**spec.importer_kwargs, **(product.importer_kwargs if product else {})}
    quantity = product.quantity if product else spec.quantity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        field, _quality, metadata = _importer(spec.importer)(str(path), **kwargs)
    field = np.ma.filled(np.ma.asarray(field, dtype=np.float64), np.nan)
    if field.ndim != 2:
        raise ValueError(f"{path.name}: expected a 2-D field, the importer returned shape {field.shape}")
    if product is not None:
        field = _mask_nodata(field, product)
    unit = str(metadata.get("unit", "")).lower()
    if quantity != "auto" and _UNIT_QUANTITY.get(unit) != quantity:
        raise ValueError(f"{path.name}: importer reports unit {metadata.get('unit')!r}, but source "
                         f"{spec.name!r} expects {quantity}")
    metadata = grid_in_metres(metadata)
    if str(metadata.get("yorigin", "upper")) == "lower":
        field = field[::-1]
    with np.errstate(over="ignore"):  # an overflow is an inf, refused just below with a reason
        rate, conversion = to_rain_rate(field, metadata, zr)
    problems = frame_value_problems(rate[None], ceiling=max_rain_mm_h)
    if problems:
        raise RainValueError(f"{path.name}: impossible rain values after {conversion}: {problems[0][1]}; "
                             "refusing the frame")
    rate = coarsen_mean(rate, coarsen)
    rate[rate < RAIN_THRESHOLD_MM_H] = 0.0  # NaN compares False and stays NaN
    x, y = pixel_centres(metadata, field.shape, coarsen)
    is_accumulation = _UNIT_QUANTITY.get(unit) == "accumulation"
    return Frame(rain=rate.astype(np.float32), x=x, y=y, projection=str(metadata["projection"]).strip(),
                 time=time, path=path, conversion=conversion,
                 institution=str(metadata.get("institution", spec.producer)),
                 product=product.description if product and product.description else spec.product,
                 importer_kwargs=kwargs,
                 declared_step_minutes=float(metadata["accutime"]) if is_accumulation
                 else float(spec.timestep_minutes))
