"""Read one raw radar file into a rain-rate frame on its projected grid (no torch here).

Orientation: frames are stored with row 0 = the northern edge (``yorigin="upper"``), so the ``y``
coordinate *decreases* along the rows; files whose importer reports ``yorigin="lower"`` are
flipped. ``x``/``y`` are pixel-centre projected coordinates in metres, from the importer's
``x1, x2, y1, y2`` (outer edges) and pixel sizes.

Conversion to rain rate (mm/h), chosen by the unit the importer reports:

- ``dBZ``: Z-R relation ``Z = a R^b`` (default Marshall-Palmer a=200, b=1.6), so
  ``R = (10^(dBZ/10) / a)^(1/b)``;
- ``mm`` (accumulation over ``accutime`` minutes): ``R = mm / (accutime / 60)``;
- ``mm/h``: unchanged.

Then an optional integer coarsening (mean of ``f x f`` blocks, NaN if any pixel of the block is
NaN, trailing rows/columns that do not fill a block are dropped), and finally rates below
``RAIN_THRESHOLD_MM_H`` (0.1 mm/h) are set to 0. NaN marks pixels outside radar coverage as each
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

import numpy as np

from data_pipelines.sources import SourceSpec
from nowcast.types import RAIN_THRESHOLD_MM_H

#: Marshall-Palmer Z = 200 R^1.6
MARSHALL_PALMER = (200.0, 1.6)

_UNIT_QUANTITY = {"dbz": "dbz", "mm": "accumulation", "mm/h": "rate"}


@dataclass
class Frame:
    """One converted radar frame.

    rain: (H, W) float32 rain rate in mm/h, NaN outside coverage, row 0 = north.
    x: (W,) pixel-centre x in metres (increasing); y: (H,) pixel-centre y in metres (decreasing).
    """

    rain: np.ndarray
    x: np.ndarray
    y: np.ndarray
    projection: str
    time: dt.datetime
    path: Path
    conversion: str
    institution: str


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


@functools.cache
def _importer(name: str):
    from pysteps.io import get_method

    return get_method(name, "importer")


def read_frame(path: str | Path, spec: SourceSpec, zr: tuple[float, float] = MARSHALL_PALMER,
               coarsen: int = 1) -> Frame:
    """Read ``path`` with ``spec``'s pysteps importer and convert it (see the module docstring).

    Raises whatever the importer raises for an unreadable file, and ``ValueError`` for a file whose
    unit does not fit ``spec`` or whose metadata disagree with its data.
    """
    path = Path(path)
    if coarsen < 1:
        raise ValueError(f"coarsen must be a positive integer, got {coarsen}")
    time = spec.valid_time(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        field, _quality, metadata = _importer(spec.importer)(str(path), **spec.importer_kwargs)
    field = np.ma.filled(np.ma.asarray(field, dtype=np.float64), np.nan)
    if field.ndim != 2:
        raise ValueError(f"{path.name}: expected a 2-D field, the importer returned shape {field.shape}")
    unit = str(metadata.get("unit", "")).lower()
    if spec.quantity != "auto" and _UNIT_QUANTITY.get(unit) != spec.quantity:
        raise ValueError(f"{path.name}: importer reports unit {metadata.get('unit')!r}, but source "
                         f"{spec.name!r} expects {spec.quantity}")
    if str(metadata.get("yorigin", "upper")) == "lower":
        field = field[::-1]
    rate, conversion = to_rain_rate(field, metadata, zr)
    rate = coarsen_mean(rate, coarsen)
    rate[rate < RAIN_THRESHOLD_MM_H] = 0.0  # NaN compares False and stays NaN
    x, y = pixel_centres(metadata, field.shape, coarsen)
    return Frame(rain=rate.astype(np.float32), x=x, y=y, projection=str(metadata["projection"]).strip(),
                 time=time, path=path, conversion=conversion,
                 institution=str(metadata.get("institution", spec.producer)))
