"""Named radar sources: which pysteps importer reads them, how their files are named and dated.

A :class:`SourceSpec` says everything ingest needs to know about one producer's product:

- ``importer`` / ``importer_kwargs``: the ``pysteps.io.get_method(name, "importer")`` call;
- ``quantity``: what the importer is expected to return, which fixes the conversion to mm/h
  (the unit the importer reports for each file is checked against it; ``"auto"`` follows it):
  ``"dbz"`` (reflectivity, converted with a Z-R relation), ``"accumulation"`` (mm over
  ``accutime`` minutes, divided by the accumulation time) or ``"rate"`` (already mm/h);
- ``read_product``: for networks whose files say what they hold (KNMI), a function reading that
  from the file before the importer runs (:class:`ProductInfo`: importer arguments, quantity,
  no-data values); it overrides ``importer_kwargs`` and ``quantity`` per file, so every product
  the importer reads is converted by its own metadata;
- ``globs``: file-name patterns used to find and auto-detect its files (every product of the
  network that the importer reads);
- ``timestep_minutes``: the step the source declares for frames that are not accumulations (an
  accumulation declares its own accumulation time); ingest measures the real step from the
  frames' times, names a disagreement and stores the measured one;
- ``time_regex`` / ``time_format``: the frame's valid time from the file name (UTC). Sources
  without a dated file name (generic ODIM composites) read it from the file (``/what`` date/time).

Sources are registered in :data:`SOURCES` (a :class:`nowcast.registry.Registry`), so a new radar
network is one more ``SOURCES.register(...)(SourceSpec(...))`` line.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.registry import Registry

QUANTITIES = ("dbz", "accumulation", "rate", "auto")


@dataclass(frozen=True)
class ProductInfo:
    """What one file says it holds, read from its own metadata before the importer runs.

    importer_kwargs: arguments for the importer (override the source's); quantity: ``"dbz"``,
    ``"accumulation"`` or ``"rate"``; nodata: values of the importer's field (its unit) that mean
    "no data" and become NaN; resolution: the field's value step (one raw count), so ``nodata``
    values are matched to half of it; description: the file's own words, for provenance.
    """

    importer_kwargs: dict[str, Any]
    quantity: str
    nodata: tuple[float, ...] = ()
    resolution: float = 0.0
    description: str = ""


@dataclass(frozen=True)
class SourceSpec:
    """One radar product and how to read it (see the module docstring)."""

    name: str
    producer: str
    product: str
    importer: str
    quantity: str
    globs: tuple[str, ...]
    timestep_minutes: float
    importer_kwargs: dict[str, Any] = field(default_factory=dict)
    time_regex: str | None = None
    time_format: str | None = None
    read_product: Callable[[Path], ProductInfo] | None = None

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"source {self.name!r}: quantity must be one of {QUANTITIES}, "
                             f"got {self.quantity!r}")

    def matches(self, path: str | Path) -> bool:
        """Whether the file name matches one of this source's globs."""
        name = Path(path).name
        return any(fnmatch.fnmatch(name, g) for g in self.globs)

    def valid_time(self, path: str | Path) -> dt.datetime:
        """Valid time (UTC, naive) of the frame in ``path``; ``ValueError`` if it cannot be found."""
        name = Path(path).name
        if self.time_regex is not None and self.time_format is not None:
            m = re.search(self.time_regex, name)
            if m is None:
                raise ValueError(f"file name {name!r} does not match the {self.name} time pattern "
                                 f"{self.time_regex!r}")
            return dt.datetime.strptime(m.group(1), self.time_format)
        return odim_valid_time(path)


def odim_valid_time(path: str | Path) -> dt.datetime:
    """Nominal time of an ODIM HDF5 file from its ``/what`` ``date`` and ``time`` attributes."""
    import h5py

    with h5py.File(path, "r") as f:
        what = f["what"].attrs
        date, time = (v.decode() if isinstance(v, bytes) else str(v) for v in (what["date"], what["time"]))
    return dt.datetime.strptime(date + time[:6], "%Y%m%d%H%M%S")


@dataclass(frozen=True)
class _KnmiQuantity:
    """One image quantity of pysteps' ``knmi_hdf5``: its ``qty``, our quantity, the calibration
    ``GEO = gain * PV + offset`` pysteps applies, and whether the file's "missing data" code means
    no data (for reflectivity it is PV 0, the -32 dBZ no-echo floor, read as dry like pysteps)."""

    qty: str
    quantity: str
    gain: float
    offset: float
    missing_is_nodata: bool


#: KNMI ``image1/image_geo_parameter`` -> how pysteps' ``knmi_hdf5`` reads it
KNMI_QUANTITIES = {
    "REFLECTIVITY_[DBZ]": _KnmiQuantity("DBZH", "dbz", 0.5, -32.0, missing_is_nodata=False),
    "ACCUMULATED_PRECIPITATION_[MM]": _KnmiQuantity("ACRR", "accumulation", 0.01, 0.0,
                                                    missing_is_nodata=True),
}
_KNMI_TIME_FORMAT = "%d-%b-%Y;%H:%M:%S.%f"


def _text(value: Any) -> str:
    """An HDF5 string attribute (bytes, numpy bytes or a one-element array of them) as text."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")).strip()


def knmi_product(path: str | Path) -> ProductInfo:
    """What a KNMI HDF5 file holds, from its own metadata (``image1`` quantity and calibration,
    ``overview`` product name and times); ``ValueError`` for a product pysteps cannot read right.

    The conversion follows the image quantity (reflectivity: ``qty="DBZH"``; accumulated
    precipitation: ``qty="ACRR"`` over the accumulation time the product states); a calibration
    other than the one pysteps applies is refused rather than converted wrongly; the file's
    no-data codes (``calibration_out_of_image``, and ``calibration_missing_data`` of an
    accumulation) become NaN.
    """
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        image, overview = f["image1"].attrs, f["overview"].attrs
        calibration = f["image1/calibration"].attrs
        parameter = _text(image.get("image_geo_parameter"))
        names = [_text(image.get("image_product_name")), _text(overview.get("product_group_name")), path.name]
        formula = _text(calibration.get("calibration_formulas"))
        out_of_image, missing = (np.ravel(calibration.get(k, [])).astype(float).tolist()
                                 for k in ("calibration_out_of_image", "calibration_missing_data"))
        span = [_text(overview.get(k)) for k in ("product_datetime_start", "product_datetime_end")]
    known = KNMI_QUANTITIES.get(parameter)
    if known is None:
        raise ValueError(f"KNMI image quantity {parameter!r} is not one pysteps' knmi_hdf5 reads "
                         f"({', '.join(KNMI_QUANTITIES)})")
    gain, offset = _knmi_calibration(formula)
    if not (np.isclose(gain, known.gain) and np.isclose(offset, known.offset)):
        raise ValueError(f"KNMI calibration {formula!r} of {parameter} is not the GEO = {known.gain:g} * PV "
                         f"+ {known.offset:g} that pysteps' knmi_hdf5 applies; refusing to convert it")
    codes = out_of_image + (missing if known.missing_is_nodata else [])
    kwargs: dict[str, Any] = {"qty": known.qty}
    description = f"KNMI {names[0] or names[1]} ({parameter}, {formula}"
    if known.quantity == "accumulation":
        kwargs["accutime"] = _knmi_accutime(names, span)
        description += f", over {kwargs['accutime']:g} min"
    return ProductInfo(kwargs, known.quantity, nodata=tuple(sorted({gain * c + offset for c in codes})),
                       resolution=gain, description=description + ")")


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _knmi_calibration(formula: str) -> tuple[float, float]:
    """(gain, offset) of ``GEO = gain * PV + offset`` (also ``+ -32`` and ``- 32``)."""
    m = re.fullmatch(rf"GEO\s*=\s*({_NUMBER})\s*\*\s*PV\s*([-+])\s*({_NUMBER})", formula)
    if m is None:
        raise ValueError(f"KNMI calibration {formula!r} is not of the form 'GEO = a * PV + b'")
    return float(m.group(1)), float(m.group(3)) * (-1.0 if m.group(2) == "-" else 1.0)


def _knmi_accutime(names: list[str], span: list[str]) -> float:
    """Accumulation time (min) a KNMI product states: in its name ("5min", "01H") and/or as the
    span between its start and end times; both must agree, and one must be there."""
    stated: dict[str, float] = {}
    for name in names:
        m = re.search(r"(\d+)min|_(\d+)H(?![A-Za-z])", name, flags=re.IGNORECASE)
        if m:
            stated[f"name {name!r}"] = float(m.group(1)) if m.group(1) else 60.0 * float(m.group(2))
            break
    try:
        start, end = (dt.datetime.strptime(t, _KNMI_TIME_FORMAT) for t in span)
        if end > start:
            stated["start..end"] = (end - start).total_seconds() / 60.0
    except ValueError:
        pass  # no usable times: the name has to say it
    if not stated:
        raise ValueError("KNMI accumulation product states no accumulation time (no 'NNmin' or '_NNH' "
                         "in its product name, product_datetime_start == product_datetime_end); "
                         "refusing to guess it")
    if len(set(stated.values())) > 1:
        raise ValueError("KNMI accumulation time is ambiguous: "
                         + ", ".join(f"{k} says {v:g} min" for k, v in stated.items()))
    return next(iter(stated.values()))


def fmi_product(path: str | Path) -> ProductInfo:
    """An FMI PGM composite, gzipped (``.pgm.gz``, as FMI publishes them) or not (``.pgm``)."""
    return ProductInfo({"gzipped": Path(path).suffix == ".gz"}, "dbz")


SOURCES: Registry[SourceSpec] = Registry("radar source")


def _add(spec: SourceSpec) -> SourceSpec:
    return SOURCES.register(spec.name)(spec)


# KNMI: every product knmi_hdf5 reads (reflectivity DBZH, accumulations ACRR such as
# RAD_NL25_RAP_5min), each converted by what its own metadata say (knmi_product)
_add(SourceSpec(
    name="knmi", producer="KNMI", product="radar composite (reflectivity or rain accumulation)",
    importer="knmi_hdf5", quantity="auto", globs=("*.hf5", "RAD_NL25_*.h5"), read_product=knmi_product,
    timestep_minutes=5.0, time_regex=r"(\d{12})", time_format="%Y%m%d%H%M"))
_add(SourceSpec(
    name="fmi", producer="FMI", product="radar composite, lowest elevation (dBZ)", importer="fmi_pgm",
    quantity="dbz", globs=("*fmi.radar.composite*.pgm.gz", "*fmi.radar.composite*.pgm"),
    read_product=fmi_product, timestep_minutes=5.0, time_regex=r"^(\d{12})_fmi", time_format="%Y%m%d%H%M"))
_add(SourceSpec(
    name="mch", producer="MeteoSwiss", product="AQC 5-min rain accumulation", importer="mch_gif",
    importer_kwargs={"product": "AQC", "unit": "mm", "accutime": 5.0}, quantity="accumulation",
    globs=("AQC*.gif",), timestep_minutes=5.0, time_regex=r"^AQC(\d{9})", time_format="%y%j%H%M"))
_add(SourceSpec(
    name="rmi", producer="RMI", product="radqpe best composite rain rate (ODIM)", importer="odim_hdf5",
    quantity="rate", globs=("*.rad.best.comp.rate.qpe.hdf",), timestep_minutes=5.0,
    time_regex=r"^(\d{14})\.rad", time_format="%Y%m%d%H%M%S"))
_add(SourceSpec(
    name="bom", producer="BOM", product="rainfields3 rain accumulation (prcp-cscn 6 min, prcp-c10 10 min)",
    importer="bom_rf3", quantity="accumulation", globs=("*.prcp-cscn.nc", "*.prcp-c10.nc"),
    timestep_minutes=6.0,
    time_regex=r"_(\d{8}_\d{6})\.prcp", time_format="%Y%m%d_%H%M%S"))
# Any other ODIM HDF5 composite (pysteps reads its RATE quantity by default; pass
# importer_kwargs={"qty": "DBZH"} or "ACRR" for others): the conversion follows the unit the
# importer reports, the time comes from /what. Detected last.
_add(SourceSpec(
    name="odim", producer="ODIM", product="ODIM HDF5 composite", importer="odim_hdf5",
    quantity="auto", globs=("*.h5", "*.hdf", "*.hdf5"), timestep_minutes=5.0))

#: auto-detection order: specific names first, the generic ODIM patterns last
_DETECT_ORDER = ("knmi", "fmi", "mch", "rmi", "bom", "odim")


def get_source(name: str) -> SourceSpec:
    """The registered source ``name`` (an unknown name lists the known ones)."""
    return SOURCES.get(name)


def detect_source(path: str | Path) -> SourceSpec:
    """The source whose file-name globs match ``path``; ``ValueError`` naming the known patterns."""
    for name in _DETECT_ORDER + tuple(n for n in SOURCES.names() if n not in _DETECT_ORDER):
        spec = SOURCES.get(name)
        if spec.matches(path):
            return spec
    known = "; ".join(f"{n}: {', '.join(SOURCES.get(n).globs)}" for n in SOURCES.names())
    raise ValueError(f"cannot tell the radar source of {Path(path).name!r} from its name "
                     f"(known patterns: {known}); pass source=<name>")


def find_files(folder: str | Path, source: SourceSpec | None = None) -> list[Path]:
    """Files under ``folder`` (recursively) that ``source`` (or any known source) can read, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"radar folder not found: {folder}")
    specs = [source] if source is not None else [SOURCES.get(n) for n in SOURCES.names()]
    return sorted(p for p in folder.rglob("*") if p.is_file() and any(s.matches(p) for s in specs))
