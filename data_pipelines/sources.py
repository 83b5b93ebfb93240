"""Named radar sources: which pysteps importer reads them, how their files are named and dated.

A :class:`SourceSpec` says everything ingest needs to know about one producer's product:

- ``importer`` / ``importer_kwargs``: the ``pysteps.io.get_method(name, "importer")`` call;
- ``quantity``: what the importer is expected to return, which fixes the conversion to mm/h
  (the unit the importer reports for each file is checked against it; ``"auto"`` follows it):
  ``"dbz"`` (reflectivity, converted with a Z-R relation), ``"accumulation"`` (mm over
  ``accutime`` minutes, divided by the accumulation time) or ``"rate"`` (already mm/h);
- ``globs``: file-name patterns used to find and auto-detect its files;
- ``time_regex`` / ``time_format``: the frame's valid time from the file name (UTC). Sources
  without a dated file name (generic ODIM composites) read it from the file (``/what`` date/time).

Sources are registered in :data:`SOURCES` (a :class:`nowcast.registry.Registry`), so a new radar
network is one more ``SOURCES.register(...)(SourceSpec(...))`` line.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nowcast.registry import Registry

QUANTITIES = ("dbz", "accumulation", "rate", "auto")


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


SOURCES: Registry[SourceSpec] = Registry("radar source")


def _add(spec: SourceSpec) -> SourceSpec:
    return SOURCES.register(spec.name)(spec)


_add(SourceSpec(
    name="knmi", producer="KNMI", product="radar reflectivity composite (DBZH)", importer="knmi_hdf5",
    importer_kwargs={"qty": "DBZH"}, quantity="dbz", globs=("*.hf5", "RAD_NL25_*.h5"),
    timestep_minutes=5.0, time_regex=r"(\d{12})", time_format="%Y%m%d%H%M"))
_add(SourceSpec(
    name="fmi", producer="FMI", product="radar composite, lowest elevation (dBZ)", importer="fmi_pgm",
    importer_kwargs={"gzipped": True}, quantity="dbz",
    globs=("*fmi.radar.composite*.pgm.gz",), timestep_minutes=5.0,
    time_regex=r"^(\d{12})_fmi", time_format="%Y%m%d%H%M"))
_add(SourceSpec(
    name="mch", producer="MeteoSwiss", product="AQC 5-min rain accumulation", importer="mch_gif",
    importer_kwargs={"product": "AQC", "unit": "mm", "accutime": 5.0}, quantity="accumulation",
    globs=("AQC*.gif",), timestep_minutes=5.0, time_regex=r"^AQC(\d{9})", time_format="%y%j%H%M"))
_add(SourceSpec(
    name="rmi", producer="RMI", product="radqpe best composite rain rate (ODIM)", importer="odim_hdf5",
    quantity="rate", globs=("*.rad.best.comp.rate.qpe.hdf",), timestep_minutes=5.0,
    time_regex=r"^(\d{14})\.rad", time_format="%Y%m%d%H%M%S"))
_add(SourceSpec(
    name="bom", producer="BOM", product="rainfields3 6-min rain accumulation (prcp-cscn)",
    importer="bom_rf3", quantity="accumulation", globs=("*.prcp-cscn.nc",), timestep_minutes=6.0,
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
