"""Ingest raw radar files into a rain store: incremental, idempotent, streaming, fault tolerant.

``ingest_files`` holds the store's writer lock for the whole run (a second writer is refused at
once with :class:`nowcast.fsutil.LockedError`, naming the holder) and first recovers what a
killed run left (see :mod:`data_pipelines.store`: a killed ingest never costs a stored frame,
and its frames are simply ingested again by the next run). It then reads the frames' valid
times from the file names (cheap), skips times already stored without reading the files
(re-ingesting a file changes nothing; one of them is converted, nothing written, to check that
this run's Z-R relation, grid and source match the store's, else they are all skipped with the
reason), and reads and converts the remaining files one at a time,
writing them in small groups. Files sharing a valid time are all read (in sorted path order):
unreadable ones are skipped, the first readable one is stored, every other one is reported as a
duplicate naming the kept file and whether their data are identical. A file that cannot be read
(corrupt, truncated, wrong unit) or that lies on another grid is logged and listed in the
report's ``skipped`` while the rest of the batch lands, and so is a frame whose rain values are
impossible (non-finite, negative, above ``max_rain_mm_h``: a wrong conversion is never stored).
Frames earlier than the store's last time are merged by a safe rewrite; the store is
schema-valid after every write.

The store's ``timestep_minutes`` is measured from its frames' times (the most common step, so a
gap changes nothing), not taken from the source: a step that differs from what the source or the
product declares is named in a warning, and the measured one is stored.
"""

from __future__ import annotations

import json
import logging
import time as _time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_pipelines import store as zstore
from data_pipelines.importers import MARSHALL_PALMER, Frame, read_frame
from data_pipelines.sources import SourceSpec, detect_source, find_files, get_source
from nowcast.fsutil import atomic_write
from nowcast.schema import (
    MAX_RAIN_ATTR,
    MAX_RAIN_RATE_MM_H,
    RAIN,
    StoreError,
    grid_signature,
    measured_timestep,
    same_grid,
)

log = logging.getLogger(__name__)

#: frames written per zarr append (bounded memory: 16 native KNMI frames are ~34 MB)
WRITE_GROUP = 16
#: show a progress bar from this many files on (unless ``progress`` says otherwise)
PROGRESS_FROM = 50
#: the duplicate reason of a time that is already stored
ALREADY_STORED = "already in the store"


@dataclass
class IngestReport:
    """What one ingest call did.

    ingested: files whose frames were written; skipped: (file, reason) for files that were not
    (unreadable, other grid, ...); duplicates: (file, reason) for frames already stored (not
    read) or repeated within the batch (the reason names the kept file and says whether the
    data differ); warnings: what was stored but deserves a look (a measured time step that
    differs from the declared one); n_frames: frames in the store afterwards.
    """

    store: Path
    ingested: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_frames: int = 0
    rewritten: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file was skipped for an error (duplicates are not errors)."""
        return not self.skipped

    def summary(self) -> str:
        lines = [f"{self.store}: {len(self.ingested)} frame(s) ingested, "
                 f"{len(self.duplicates)} duplicate(s), "
                 f"{len(self.skipped)} skipped; {self.n_frames} frame(s) in store "
                 f"({self.seconds:.1f} s{', rewritten to merge earlier times' if self.rewritten else ''})"]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += skipped_lines(self.skipped)
        lines += [f"  duplicate {Path(f).name}: {why}" for f, why in self.duplicates
                  if ALREADY_STORED not in why]
        return "\n".join(lines)


def skipped_lines(skipped: list[tuple[str, str]], examples: int = 3) -> list[str]:
    """One line per distinct reason (the file's own name taken out of it), naming the first
    ``examples`` files: 120 files on another grid make one line, not 120."""
    groups: dict[str, list[str]] = {}
    for f, why in skipped:
        name = Path(f).name
        groups.setdefault(why.replace(name, "<file>"), []).append(name)
    lines = []
    for why, names in groups.items():
        if len(names) == 1:
            lines.append(f"  skipped {names[0]}: {why.replace('<file>', names[0])}")
        else:
            shown = ", ".join(names[:examples]) + (f", ... ({len(names) - examples} more)"
                                                  if len(names) > examples else "")
            lines.append(f"  skipped {len(names)} files ({shown}): {why}")
    return lines


def crs_summary(wkt: str) -> str:
    """A CRS in one short line (its PROJ string), to tell two of the same name apart."""
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError

    try:
        return repr(ProjCRS.from_wkt(wkt).to_proj4())
    except CRSError:
        return "unreadable"


def describe_grid(sig: tuple, crs_name: str = "") -> str:
    """Human-readable grid from :func:`nowcast.schema.grid_signature`."""
    _wkt, ny, nx, x0, y0, x1, y1 = sig
    dx = abs(x1 - x0) / max(nx - 1, 1)
    name = f"{crs_name}, " if crs_name else ""
    return f"[{name}{ny}x{nx} px of {dx:.0f} m, x {x0:.0f}..{x1:.0f} m, y {y0:.0f}..{y1:.0f} m]"


@dataclass(frozen=True)
class _Options:
    """How files are converted: Z-R (a, b), coarsen factor, rain-rate ceiling (mm/h), and the
    time step (min) measured from the times at hand (None: fewer than two, use the declared)."""

    zr: tuple[float, float]
    coarsen: int
    max_rain_mm_h: float
    step_minutes: float | None


def _minutes(step: np.timedelta64 | None) -> float | None:
    return None if step is None else float(step / np.timedelta64(1, "s")) / 60.0


def _provenance(spec: SourceSpec, frame: Frame, opts: _Options) -> dict[str, Any]:
    step = opts.step_minutes if opts.step_minutes is not None else frame.declared_step_minutes
    return {
        "source": spec.producer,
        "institution": frame.institution,
        "product": frame.product,
        "conversion": frame.conversion,
        "coarsen_factor": int(opts.coarsen),
        "timestep_minutes": float(step),
        "timestep_declared_minutes": float(frame.declared_step_minutes),
        MAX_RAIN_ATTR: float(opts.max_rain_mm_h),
        "source_name": spec.name,
        "pysteps_importer": spec.importer,
        "pysteps_importer_kwargs": json.dumps(frame.importer_kwargs, sort_keys=True),
        "projection_proj4": frame.projection,
        "orientation": "row 0 = north edge; y decreases along rows, x increases along columns",
        "title": f"{spec.producer} radar rain rate",
    }


def _frame_dataset(frame: Frame, attrs: dict[str, Any]) -> xr.Dataset:
    with warnings.catch_warnings():  # pyproj: CF cannot express every parameter (kept in crs_wkt)
        warnings.simplefilter("ignore", UserWarning)
        return zstore.frames_dataset(frame.rain[None], [np.datetime64(frame.time, "ns")], frame.x, frame.y,
                                 frame.projection, [frame.path.name], attrs)


class _Writer:
    """Buffers converted frames and writes them: create / append / merge, per the store's state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: set[np.datetime64] = set()
        self.last: np.datetime64 | None = None
        self.signature: tuple | None = None
        self.grid_text = ""
        self.attrs: dict[str, Any] | None = None
        if zstore.is_zarr_store(path):
            times, ds = zstore.stored_index(path)
            self.times = set(times)
            self.last = times.max() if len(times) else None
            self.signature, self.attrs = grid_signature(ds), dict(ds.attrs)
            self.grid_text = describe_grid(self.signature, zstore.crs_name(ds))
            ds.close()
        elif path.exists():
            raise StoreError(f"{path} exists but is not a zarr store; refusing to write into it")
        self.buffer: list[xr.Dataset] = []
        self.late: list[xr.Dataset] = []
        self.rewritten = False

    def n_frames(self) -> int:
        return len(self.times)

    def check(self, ds: xr.Dataset, name: str, attrs: dict[str, Any]) -> None:
        sig = grid_signature(ds)
        if self.signature is None:
            self.signature, self.attrs = sig, attrs
            self.grid_text = describe_grid(sig, zstore.crs_name(ds))
            return
        k = (self.attrs or {}).get("coarsen_factor")
        if k is not None and int(k) != int(attrs["coarsen_factor"]):  # said first: the grid's cause
            raise StoreError(f"grid mismatch: store {self.path.name} holds rain averaged over {k}x{k} pixel "
                             f"blocks, this run asks for coarsen={attrs['coarsen_factor']}; ingest into "
                             "another store")
        if not same_grid(sig, self.signature):
            theirs = describe_grid(sig, zstore.crs_name(ds))
            if theirs == self.grid_text:  # the same size and extent: say what is not
                theirs += f" (its CRS is {crs_summary(sig[0])}, the store's {crs_summary(self.signature[0])})"
            raise StoreError(f"grid mismatch: {name} is on grid {theirs} but store {self.path.name} "
                             f"holds grid {self.grid_text}; refusing it")
        for key in ("conversion", "source_name"):
            if self.attrs is not None and str(self.attrs.get(key)) != str(attrs.get(key)):
                raise StoreError(f"{name}: {key} {attrs.get(key)!r} differs from the store's "
                                 f"{self.attrs.get(key)!r}; refusing to mix them in {self.path.name}")

    def add(self, ds: xr.Dataset) -> None:
        t = ds.time.values[0]
        if self.last is not None and t < self.last and zstore.is_zarr_store(self.path):
            self.late.append(ds)
        else:
            self.buffer.append(ds)
            if len(self.buffer) >= WRITE_GROUP:
                self.flush()
        self.times.add(t)

    def flush(self) -> None:
        if self.buffer:
            batch = xr.concat(self.buffer, dim="time", data_vars="minimal", coords="minimal",
                              compat="override", combine_attrs="override")
            if zstore.is_zarr_store(self.path):
                zstore.append_store(batch, self.path)
            else:
                zstore.create_store(batch, self.path)
            self.last = batch.time.values[-1]
            self.buffer = []
        if len(self.late) >= WRITE_GROUP:
            self._merge()

    def _merge(self) -> None:
        batch = xr.concat(self.late, dim="time", data_vars="minimal", coords="minimal",
                          compat="override", combine_attrs="override")
        zstore.merge_store(batch, self.path)
        self.late, self.rewritten = [], True

    def close(self) -> None:
        self.flush()
        if self.late:
            self._merge()


def _resolve(path: Path, source: str | SourceSpec | None) -> SourceSpec:
    if isinstance(source, SourceSpec):
        return source
    return get_source(source) if source else detect_source(path)


def _progress(items: list, enabled: bool | None, desc: str):
    if enabled is None:
        enabled = len(items) >= PROGRESS_FROM
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file")


def ingest_files(paths: Sequence[str | Path], store: str | Path, source: str | None = None, coarsen: int = 1,
                 zr: tuple[float, float] = MARSHALL_PALMER, progress: bool | None = None,
                 max_rain_mm_h: float = MAX_RAIN_RATE_MM_H) -> IngestReport:
    """Ingest raw radar files into the zarr store ``store`` (created if missing), holding its lock.

    Args:
        paths: raw files, any order; already stored times are skipped unread, files sharing a
            time are resolved among the readable ones.
        store: zarr store directory (e.g. ``stores/radar-mix/knmi.zarr``).
        source: registered source name (``data_pipelines.sources.SOURCES``); None detects it per
            file from the file name.
        coarsen: integer block size for averaging rain rates (2: 1 km -> 2 km).
        zr: (a, b) of ``Z = a R^b`` for reflectivity sources.
        progress: show a progress bar (None: from ``PROGRESS_FROM`` files on).
        max_rain_mm_h: ceiling of a believable rain rate (mm/h); a frame above it is skipped
            (recorded in the store as ``max_rain_rate_mm_h``, the ceiling evaluation checks).

    Returns an :class:`IngestReport`. Raises :class:`StoreError` if ``store`` exists but is not a
    valid rain store and :class:`nowcast.fsutil.LockedError` if another process is writing it.
    """
    t0 = _time.perf_counter()
    store = Path(store)
    zr = (float(zr[0]), float(zr[1]))
    report = IngestReport(store=store)
    by_time: dict[np.datetime64, list[tuple[Path, SourceSpec]]] = {}
    for p in sorted(set(map(Path, paths))):
        try:
            spec = _resolve(p, source)
            by_time.setdefault(np.datetime64(spec.valid_time(p), "ns"), []).append((p, spec))
        except Exception as exc:  # unreadable name/time: report, keep going
            log.debug("skipping %s: %s", p, exc)  # reported once, grouped, by the summary
            report.skipped.append((str(p), f"{type(exc).__name__}: {exc}"))

    with zstore.locked_store(store):
        writer = _Writer(store)
        todo = []
        opts = _Options(zr, coarsen, float(max_rain_mm_h),
                        _minutes(measured_timestep([*writer.times, *by_time])))
        declared: set[tuple[float, str]] = set()  # (step in min, who declares it)
        stored = [t for t in sorted(by_time) if t in writer.times]
        refused = _probe_stored(by_time[stored[0]], opts, writer) if stored else None
        for t in sorted(by_time):
            if t not in writer.times:
                todo.append(t)
            elif refused is not None:  # this run would convert them otherwise than the store holds
                report.skipped += [(str(p), refused) for p, _ in by_time[t]]
            else:
                report.duplicates += [(str(p), f"time {_iso(t)} {ALREADY_STORED}") for p, _ in by_time[t]]
        for t in _progress(todo, progress, f"ingest -> {store.name}"):
            kept: tuple[Path, xr.Dataset] | None = None
            for p, spec in by_time[t]:
                try:
                    ds = _convert(p, spec, opts, writer)
                except Exception as exc:  # corrupt/truncated file or another grid: skip it, keep the batch
                    log.debug("skipping %s: %s", p, exc)  # reported once, grouped, by the summary
                    report.skipped.append((str(p), f"{type(exc).__name__}: {exc}"))
                    continue
                if kept is None:
                    kept = (p, ds)
                    continue
                why = f"time {_iso(t)}: kept {kept[0].name}, dropped {p.name} ({_compare(kept[1], ds)})"
                log.warning("duplicate %s", why)
                report.duplicates.append((str(p), why))
            if kept is not None:
                writer.add(kept[1])
                report.ingested.append(str(kept[0]))
                declared.add((float(kept[1].attrs["timestep_declared_minutes"]), _declared_by(kept[1])))
        writer.close()
        report.warnings = _record_step_and_ceiling(writer, declared,
                                                   opts.max_rain_mm_h if report.ingested else None)
    report.n_frames, report.rewritten = writer.n_frames(), writer.rewritten
    report.seconds = _time.perf_counter() - t0
    log.debug(report.summary().splitlines()[0])  # callers print or log the summary once
    return report


def _iso(t: np.datetime64) -> str:
    return np.datetime_as_string(t, unit="s")


def _convert(p: Path, spec: SourceSpec, opts: _Options, writer: _Writer) -> xr.Dataset:
    """One file as a one-frame dataset, checked against the store (grid, conversion, ...)."""
    frame = read_frame(p, spec, zr=opts.zr, coarsen=opts.coarsen, max_rain_mm_h=opts.max_rain_mm_h)
    attrs = _provenance(spec, frame, opts)
    ds = _frame_dataset(frame, attrs)
    writer.check(ds, p.name, attrs)
    return ds


def _probe_stored(files: list[tuple[Path, SourceSpec]], opts: _Options, writer: _Writer) -> str | None:
    """Why this run's conversion of an already stored time differs from the store's (Z-R relation,
    ``coarsen`` or grid, source), or None. Already stored times are not converted again, so without
    this probe a rerun with other options would report them as stored and succeed. One file is
    converted (nothing written); a file that cannot be read says nothing about the run's options."""
    p, spec = files[0]
    try:
        _convert(p, spec, opts, writer)
    except StoreError as exc:
        return f"{exc} (its time is already stored)"
    except Exception as exc:  # corrupt or unreadable: its time is stored anyway
        log.debug("probe of %s failed: %s", p, exc)
    return None


def _declared_by(ds: xr.Dataset) -> str:
    """Who declares a frame's time step, in words: the source and its product."""
    return f"source {ds.attrs['source_name']}, {ds.attrs['product']}"


def _record_step_and_ceiling(writer: _Writer, declared: set[tuple[float, str]],
                             ceiling: float | None) -> list[str]:
    """Record in the store its time step measured from all its frame times (with one frame the
    declared step stays) and, when frames were added under ``ceiling`` (mm/h), the widest
    ceiling any stored frame was admitted under; returns a warning for each declared step
    (min, who declares it) that differs from the measured one."""
    stored = writer.attrs or {}
    updates: dict[str, float] = {}
    minutes = _minutes(measured_timestep(list(writer.times)))
    warnings_ = []
    if minutes is not None:
        updates["timestep_minutes"] = minutes
        warnings_ = [f"{writer.path.name}: frames are {minutes:g} min apart, but {who} declares {d:g} min; "
                     f"stored the measured {minutes:g} min" for d, who in sorted(declared)
                     if not np.isclose(d, minutes)]
    if ceiling is not None:
        updates[MAX_RAIN_ATTR] = max(ceiling, float(stored.get(MAX_RAIN_ATTR, 0.0)))
    changed = {k: v for k, v in updates.items() if k not in stored or not np.isclose(float(stored[k]), v)}
    if changed and zstore.is_zarr_store(writer.path):
        _set_store_attrs(writer.path, changed)
        log.info("%s: recorded %s (was %s)", writer.path.name, changed, {k: stored.get(k) for k in changed})
    for w in warnings_:
        log.warning(w)
    return warnings_


def _set_store_attrs(path: Path, attrs: dict[str, Any]) -> None:
    """Update global attributes of the zarr v2 store ``path`` (hold its lock): ``.zattrs`` then the
    consolidated ``.zmetadata`` that readers use, each replaced atomically, so a reader sees the
    old or the new attributes and a kill in between leaves the old ones in force."""
    consolidated = json.loads((path / ".zmetadata").read_text())
    merged = {**consolidated["metadata"].get(".zattrs", {}), **attrs}
    consolidated["metadata"][".zattrs"] = merged
    atomic_write(path / ".zattrs", json.dumps(merged, indent=4, sort_keys=True))
    atomic_write(path / ".zmetadata", json.dumps(consolidated, indent=4, sort_keys=True))


def _compare(kept: xr.Dataset, other: xr.Dataset) -> str:
    """Whether two frames of one time hold the same rain rates, in words."""
    a, b = kept[RAIN].values, other[RAIN].values
    if np.array_equal(a, b, equal_nan=True):
        return "identical data"
    both = np.isfinite(a) & np.isfinite(b)
    text = f"different data, max |diff| {np.abs(a[both] - b[both]).max():.3g} mm/h" if both.any() \
        else "different data"
    coverage = int((np.isfinite(a) != np.isfinite(b)).sum())
    return text + (f", coverage differs at {coverage} px" if coverage else "")


def ingest_folder(folder: str | Path, store: str | Path, source: str | None = None, coarsen: int = 1,
                  zr: tuple[float, float] = MARSHALL_PALMER, progress: bool | None = None,
                  max_rain_mm_h: float = MAX_RAIN_RATE_MM_H) -> IngestReport:
    """Ingest every file under ``folder`` (recursively) that ``source`` (or any known source) reads."""
    spec = get_source(source) if source else None
    files = find_files(folder, spec)
    if not files:
        raise FileNotFoundError(f"no radar files found under {folder}"
                                + (f" for source {source!r}" if source else ""))
    return ingest_files(files, store, source=source, coarsen=coarsen, zr=zr, progress=progress,
                        max_rain_mm_h=max_rain_mm_h)


@dataclass(frozen=True)
class StoreSpec:
    """One store of a set built by one command: its file name, source, folders (relative to the
    radar root), whether it is built only on request (``optional``) and, for a network whose pixels
    differ from the others', its own block size (``coarsen``; None = the set's)."""

    store: str
    source: str
    folders: tuple[str, ...]
    optional: bool = False
    coarsen: int | None = None

    @classmethod
    def from_config(cls, name: str, entry: dict) -> StoreSpec:
        """``name: {source: knmi, folders: [knmi_2021], optional: false, coarsen: 2}`` (a ``stores``
        entry of configs/ingest/*.yaml) -> ``StoreSpec("<name>.zarr", ...)``."""
        unknown = set(entry) - {"source", "folders", "optional", "coarsen"}
        if unknown or "source" not in entry or not entry.get("folders"):
            raise ValueError(f"store {name!r}: expected keys source, folders[, optional, coarsen], "
                             f"got {sorted(entry)}")
        coarsen = entry.get("coarsen")
        if coarsen is not None and (isinstance(coarsen, bool) or not isinstance(coarsen, int) or coarsen < 1):
            raise ValueError(f"store {name!r}: coarsen must be a whole number >= 1, got {coarsen!r}")
        return cls(f"{name}.zarr", str(entry["source"]), tuple(str(f) for f in entry["folders"]),
                   bool(entry.get("optional", False)), coarsen)


def build_stores(stores: Sequence[StoreSpec], out: str | Path, radar_root: Path | None = None,
                 coarsen: int = 1, zr: tuple[float, float] = MARSHALL_PALMER,
                 max_rain_mm_h: float = MAX_RAIN_RATE_MM_H, include_optional: bool = False,
                 progress: bool | None = None) -> dict[str, Path]:
    """Build (or update, idempotently) every store of ``stores`` under ``out``.

    ``radar_root`` defaults to :func:`nowcast.types.radar_dir` (``../shared/radar``). Optional
    stores are built only with ``include_optional``. A store's own ``coarsen`` replaces ``coarsen``
    (networks of finer pixels reach the same grid). Returns {store stem (e.g. "knmi"): store path}.
    Raises ``FileNotFoundError`` if a store has no files, ``RuntimeError`` if any file could not be
    ingested, and :class:`nowcast.fsutil.LockedError` if another process is writing one of the
    stores (each store is written under its own lock, by :func:`ingest_files`).
    """
    from nowcast.types import radar_dir

    root = Path(radar_root) if radar_root is not None else radar_dir()
    out = Path(out)
    built: dict[str, Path] = {}
    problems: list[str] = []
    for item in stores:
        if item.optional and not include_optional:
            continue
        spec = get_source(item.source)
        files: list[Path] = []
        for folder in item.folders:
            files += find_files(root / folder, spec)
        if not files:
            raise FileNotFoundError(f"{item.store}: no {item.source} files under {root} / {item.folders}")
        k = item.coarsen if item.coarsen is not None else coarsen
        report = ingest_files(files, out / item.store, source=item.source, coarsen=k, zr=zr,
                              progress=progress, max_rain_mm_h=max_rain_mm_h)
        problems += [f"{item.store}: {Path(f).name}: {why}" for f, why in report.skipped]
        built[Path(item.store).stem] = out / item.store
    if problems:
        raise RuntimeError(f"{len(problems)} file(s) could not be ingested:\n" + "\n".join(problems))
    return built
