"""Write rain frames into a chunked zarr store following :mod:`nowcast.schema`; export to netCDF4.

Layout on disk: zarr format 2 with consolidated metadata (read by any zarr/xarray), ``rain_rate``
chunked ``(1, H, W)`` (one frame per chunk, so windows read only the frames they need), time
encoded as int64 seconds since 1970-01-01 so 5- and 6-minute steps append exactly.

Crash safety (a ``kill -9`` or a power cut at any moment leaves the store exactly as before the
interrupted write, or exactly as after it):

- one writer at a time: writers hold :func:`locked_store` (an exclusive lock on ``<store>.lock``,
  see :class:`nowcast.fsutil.WriterLock`), which first runs :func:`recover_store`;
- new store: written to the hidden ``.<store>.nowcast-tmp-<pid>``, fsynced, renamed into place;
- frames later than the last stored time: appended along ``time`` in place, as a transaction. The
  journal ``<store>/.nowcast-journal.json`` (written atomically before the append, removed after
  it, once everything is fsynced) holds the committed frame count and verbatim copies of every
  metadata file and of the coordinate chunks the append may rewrite; recovery puts them back and
  deletes the chunks beyond the committed frames. Readers meanwhile see the committed frames:
  the consolidated metadata they read is the last thing an append rewrites;
- frames earlier than the last stored time (a late scan): the stored frames after the earliest
  new one (at most :data:`MAX_TAIL_FRAMES`) are rewritten in place with the new ones sorted in, as
  the same kind of transaction (the journal keeps their committed chunks, and a reader that opens
  the store first rolls back a killed rewrite: :func:`recover_for_reading`), so a late scan costs
  the same whatever the store's length (``benchmarks/bench_late_scan.py``: 300 to 8,000 frames);
- frames earlier still: the stored and the new frames are merged lazily (chunk by chunk) into
  ``.<store>.nowcast-tmp-<pid>``, which then replaces the store (old -> ``.<store>.nowcast-bak-<pid>``,
  temp -> store, backup removed); recovery puts a backup back if the store is missing and removes
  it otherwise;
- recovery also removes the ``.<store>.nowcast-tmp-*`` folders, and the ``*.tmp-*`` and zarr's
  ``*.partial`` files inside the store, of killed runs. Beside the store it touches only these
  namespaced names: a user's own ``<store>.bak-...`` copy is never removed or swapped in.

The motion caches (:mod:`nowcast.data.motion_cache`) are written the same way, by the same
:func:`locked_store`, :func:`create_zarr`, :func:`append_zarr` and :func:`replace_zarr`.
"""

from __future__ import annotations

import base64
import glob
import itertools
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast.fsutil import (
    LockedError,
    WriterLock,
    atomic_write,
    fsync_path,
    fsync_tree,
    settle_zarr_writes,
    writing,
)
from nowcast.schema import (
    CRS,
    RAIN,
    SOURCE_FILE,
    StoreError,
    complete_grid_mapping,
    make_rain_dataset,
    validate_rain_dataset,
)

log = logging.getLogger(__name__)

TIME_ENCODING = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian",
                 "dtype": "int64"}
ZARR_FORMAT = 2
#: the append journal inside a store; present only while an append is in progress (or was killed)
JOURNAL = ".nowcast-journal.json"


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    h, w = ds.sizes["y"], ds.sizes["x"]
    return {
        RAIN: {"chunks": (1, h, w)},
        "time": dict(TIME_ENCODING),
        SOURCE_FILE: {"dtype": object},
    }


def _strip_encoding(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {}
    return ds


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    ds = _strip_encoding(ds)
    ds[SOURCE_FILE] = ds[SOURCE_FILE].astype(object)
    return ds


def is_zarr_store(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / m).exists() for m in (".zgroup", "zarr.json", ".zmetadata"))


#: file suffixes read as netCDF; anything else is a zarr folder
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def read_store(path: str | Path, chunks: str | None = "frames") -> xr.Dataset:
    """Open a store (zarr folder or netCDF file) lazily: the one reader of ingest, the data module,
    the motion caches, forecasts and evaluation (:func:`nowcast.data.store.open_store` adds the
    checks of a rain store on top).

    ``chunks``: "frames" = dask arrays, one frame per chunk; None = lazy backend arrays without
    dask (indexing reads just the chunks it touches: the training and evaluation windows).
    Zarr format v2/v3 warnings are silenced; ``source_file`` comes back as plain strings.
    """
    path = Path(path)
    netcdf = path.suffix.lower() in NETCDF_SUFFIXES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if netcdf:
            ds = xr.open_dataset(path, engine="netcdf4", chunks={"time": 1} if chunks == "frames" else None)
        else:
            ds = xr.open_zarr(path, consolidated=None, **({} if chunks == "frames" else {"chunks": None}))
    return plain_strings(ds)


def plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """``source_file`` as a plain numpy unicode array (T small strings; zarr may hand back numpy's
    StringDType, which e.g. ``astype(str)`` refuses)."""
    if SOURCE_FILE in ds.variables:
        var = ds[SOURCE_FILE]
        ds[SOURCE_FILE] = (var.dims, np.array([str(s) for s in var.values], dtype=str), var.attrs)
    return ds


def _to_zarr(ds: xr.Dataset, path: Path, **kw: Any) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(path, zarr_format=ZARR_FORMAT, consolidated=True, **kw)
    except Exception:
        settle_zarr_writes()  # the other chunk writes of a failed call go on: let them end first
        raise


def create_store(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` (schema-valid) as a new zarr store at ``path``, atomically (hold :func:`locked_store`)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"store already exists: {path}")
    validate_rain_dataset(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _prepare(ds)
    create_zarr(ds, path, encoding=_encoding(ds))


def _write_temporary(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]]) -> Path:
    """Write ``ds`` (consolidated, fsynced) to :func:`scratch_path` "tmp", to be renamed to ``path``."""
    tmp = scratch_path(path, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _to_zarr(ds, tmp, mode="w-", encoding=encoding)
        fsync_tree(tmp)
    except Exception:  # a full disk: the partial copy would keep it full (a kill: recover_store)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def create_zarr(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]]) -> None:
    """Write ``ds`` as the new zarr store ``path`` by a rename, so that it appears complete or not
    at all (hold :func:`locked_store`). A failed write (a full disk) raises
    :class:`~nowcast.fsutil.WriteError` and leaves nothing behind."""
    with writing(path):
        _write_temporary(ds, path, encoding).rename(path)
        fsync_path(path.parent)


def replace_zarr(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]]) -> None:
    """Replace the zarr store ``path`` by ``ds`` (which may read lazily from it): written beside it,
    then two renames (old -> :func:`scratch_path` "bak", new -> ``path``; :func:`recover_store` puts
    the backup back after a kill between them). Hold :func:`locked_store`. A failed write (a full
    disk) raises :class:`~nowcast.fsutil.WriteError`; the store stays as it was."""
    with writing(path):
        tmp = _write_temporary(ds, path, encoding)
        bak = scratch_path(path, "bak")
        path.rename(bak)
        tmp.rename(path)  # the commit
        fsync_path(path.parent)
        shutil.rmtree(bak)


def append_store(ds: xr.Dataset, path: str | Path) -> None:
    """Append frames all later than the store's last time, as a transaction (see the module
    docstring; the caller holds :func:`locked_store` and checks grid and times)."""
    path = Path(path)
    ds = _prepare(ds)
    # xarray rewrites the group attributes on append: keep the store's own provenance
    with read_store(path) as old:
        ds.attrs = dict(old.attrs)
    append_zarr(ds.drop_vars([CRS, "x", "y"]), path)


def append_zarr(ds: xr.Dataset, path: Path) -> None:
    """Append ``ds`` along ``time`` to the consolidated zarr store ``path`` as a transaction: journal,
    append, fsync, commit (the journal's removal). Killed or failed at any point, the store still
    reads as before (its consolidated metadata is rewritten last) and :func:`recover_store` rolls
    the rest back: at once if the append failed (a full disk: raised as
    :class:`~nowcast.fsutil.WriteError`, and the space of the frames not appended is freed), else
    at the next writer. ``ds`` holds only the variables to append (hold :func:`locked_store`)."""
    _transaction(path, lambda: _to_zarr(ds, path, mode="a", append_dim="time"))


def _transaction(path: Path, write: Callable[[], None], from_frame: int | None = None) -> None:
    """Run ``write``, which changes the store ``path`` from frame ``from_frame`` on (default: only
    frames after its last), as a transaction: journal (:func:`_begin_append`), write, fsync, commit
    (the journal's removal); a failed write is rolled back at once, a kill at the next writer."""
    started = time.time()
    with writing(path):
        try:
            _begin_append(path, from_frame)
            write()
            # 2 s: file time stamps may lag the clock by a tick
            fsync_tree(path, newer_than=started - 2.0)
            (path / JOURNAL).unlink()  # the commit
        except Exception:  # a failed write; a kill or Ctrl-C is the next writer's to recover
            _roll_back_now(path)
            raise
        fsync_path(path)


def _roll_back_now(path: Path) -> None:
    """Roll back the append to ``path`` that just failed; if that fails too (the disk still too
    full to restore a metadata file), the journal stays for the next writer's recovery."""
    try:
        for line in _rollback_append(path):
            log.warning(line)
    except OSError as err:
        log.warning("could not roll back the failed append to %s now (%s); the next writer will", path, err)


#: the most frames stored after a late frame that :func:`merge_store` rewrites in place (a day of
#: 5-minute scans); with more, the whole store is rewritten
MAX_TAIL_FRAMES = 288


def merge_store(ds: xr.Dataset, path: str | Path) -> None:
    """Merge frames (times not in the store, any order) into the store (hold :func:`locked_store`).

    A late scan is the common case: the frames stored after the earliest new one (at most
    :data:`MAX_TAIL_FRAMES`) are rewritten in place with the new ones among them, as a transaction
    (:func:`_insert_near_tail`), so its cost does not grow with the store; else the store is
    rewritten whole, streaming (dask, one frame per chunk), and replaces the old one by renames.
    """
    path = Path(path)
    with read_store(path) as old:
        n = old.sizes["time"]
        first = int(np.searchsorted(old.time.values, ds.time.values.min()))
        if first == n:  # nothing to merge among: all after the last
            tail = None
            append_store(ds.sortby("time"), path)
        elif n - first <= MAX_TAIL_FRAMES:
            tail = _strip_encoding(old.isel(time=slice(first, None)).load())
            attrs = dict(old.attrs)
        else:
            tail = None
            merged = xr.concat([_strip_encoding(old), _strip_encoding(ds).chunk({"time": 1})], dim="time",
                               data_vars="minimal", coords="minimal", compat="override", join="override",
                               combine_attrs="override").sortby("time")
            validate_rain_dataset(merged)
            merged = _prepare(merged)
            replace_zarr(merged.chunk({"time": 1}), path, _encoding(merged))
    if tail is not None:
        _insert_near_tail(tail, ds, path, first, attrs)


def _insert_near_tail(tail: xr.Dataset, ds: xr.Dataset, path: Path, first: int,
                      attrs: dict[str, Any]) -> None:
    """Rewrite the stored frames ``tail`` (from position ``first`` to the end) with the frames
    ``ds`` sorted in among them: the first ``len(tail)`` merged frames in place (a region write),
    the rest appended, both in one transaction whose journal keeps the tail's committed chunks;
    the store keeps its attributes ``attrs`` (xarray rewrites them on append).
    Readers see sorted, unique times throughout; one reading the tail while it is rewritten (a
    matter of milliseconds) may see part of it shifted."""
    merged = xr.concat([tail, _strip_encoding(ds)], dim="time", data_vars="minimal", coords="minimal",
                       compat="override", join="override", combine_attrs="override").sortby("time")
    validate_rain_dataset(merged)
    body = _prepare(merged).drop_vars([CRS, "x", "y"])
    body.attrs = attrs
    n = first + tail.sizes["time"]
    in_place, after = body.isel(time=slice(0, n - first)), body.isel(time=slice(n - first, None))

    def write() -> None:
        # without its index, the time coordinate is written like the data (a region write skips
        # index coordinates)
        _to_zarr(in_place.drop_indexes("time"), path, region={"time": slice(first, n)})
        _to_zarr(after, path, mode="a", append_dim="time")

    _transaction(path, write, from_frame=first)


def scratch_path(path: Path, kind: str) -> Path:
    """This writer's temporary (``kind`` "tmp") or backup ("bak") folder beside the store ``path``:
    a hidden, namespaced name that nobody else gives a folder, so recovery may remove it."""
    return path.with_name(f".{path.name}.nowcast-{kind}-{os.getpid()}")


def scratch_paths(path: Path, kind: str) -> list[Path]:
    """The ``kind`` folders any writer of the store ``path`` left beside it (:func:`scratch_path`)."""
    found = path.parent.glob(f".{glob.escape(path.name)}.nowcast-{kind}-*")
    return sorted(p for p in found if p.name.rsplit("-", 1)[-1].isdigit())


@contextmanager
def locked_store(path: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold the writer lock of the store at ``path`` (it need not exist yet) and recover what a
    killed writer left (:func:`recover_store`) before anything else.

    Raises :class:`nowcast.fsutil.LockedError` (one line naming the holder) if another live
    process writes the store. ``command`` is what the lock file says this writer is doing.
    """
    path = Path(path)
    with WriterLock(path, command=command):
        recover_store(path)
        yield path


def recover_store(path: str | Path) -> list[str]:
    """Undo what killed writers left at the store ``path``; returns what was done (each logged).

    Rolls back an interrupted append (journal, or a torn append of a writer from before
    journals: arrays longer than the consolidated metadata says), restores the store from a
    merge's backup if a kill came between its renames, and removes the temporary folders and
    files of killed runs. Call it holding the store's lock (:func:`locked_store` does).
    """
    path = Path(path)
    done: list[str] = []
    baks = sorted(scratch_paths(path, "bak"), key=lambda p: p.stat().st_mtime)
    if baks and not path.exists():
        bak = baks.pop()
        bak.rename(path)
        fsync_path(path.parent)
        done.append(f"recovered {path}: put back the store from before an interrupted merge ({bak.name})")
    leftovers = baks + scratch_paths(path, "tmp")
    if path.is_dir():
        leftovers += sorted(path.glob("*.tmp-*"))
    for p in leftovers:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        done.append(f"removed {p}, left by a killed run")
    if (path / ".zmetadata").is_file():
        done += _rollback_append(path)
    for line in done:
        log.warning(line)
    return done


def _time_arrays(zmeta: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(array name, index of its time axis, its .zarray) for each array with a time dimension."""
    for key, meta in zmeta.items():
        if key.endswith("/.zarray"):
            array = key[: -len("/.zarray")]
            dims = zmeta.get(f"{array}/.zattrs", {}).get("_ARRAY_DIMENSIONS", [])
            if "time" in dims:
                yield array, dims.index("time"), meta


def _consolidated(path: Path) -> dict[str, Any]:
    if not (path / ".zmetadata").is_file():
        raise StoreError(f"{path} has no consolidated metadata (.zmetadata); refusing to append to it")
    return json.loads((path / ".zmetadata").read_text())["metadata"]


def _begin_append(path: Path, from_frame: int | None = None) -> None:
    """Write the journal that lets :func:`recover_store` undo the write that follows: an append
    (``from_frame`` None), or a write that changes the stored frames from ``from_frame`` on."""
    zmeta = _consolidated(path)
    n = int(zmeta["time/.zarray"]["shape"][0])
    changed = n if from_frame is None else from_frame
    metadata = {key: (path / key).read_text() for key in [".zmetadata", *zmeta] if (path / key).is_file()}
    chunks: dict[str, str | None] = {}  # chunk key -> base64 bytes (None: no such file)
    for array, axis, meta in _time_arrays(zmeta):
        size, sep = meta["chunks"][axis], meta.get("dimension_separator") or "."
        # the chunks holding committed frames from `changed` on are rewritten: keep their bytes
        # (for an append: the one straddling frame n, if any)
        committed = range(changed // size, math.ceil(n / size))
        if not committed:
            continue
        grid = [range(math.ceil(s / c)) if i != axis else committed
                for i, (s, c) in enumerate(zip(meta["shape"], meta["chunks"], strict=True))]
        for index in itertools.product(*grid):
            f = path / array / sep.join(map(str, index))
            chunks[f"{array}/{sep.join(map(str, index))}"] = (
                base64.b64encode(f.read_bytes()).decode() if f.is_file() else None)
    atomic_write(path / JOURNAL, json.dumps({"frames": n, "from_frame": from_frame, "pid": os.getpid(),
                                             "started": time.time(), "metadata": metadata,
                                             "chunks": chunks}))


def recover_for_reading(path: str | Path) -> None:
    """Before a store is read: roll back a write that changed stored frames in place (a late frame
    merged in, :func:`_insert_near_tail`) and was killed, so that readers never see its half-shifted
    frames. An interrupted append needs nothing (its frames are not listed yet). Raises
    :class:`~nowcast.schema.StoreError` if a live writer is rewriting the store in place now, or if
    the store cannot be recovered here (not writable)."""
    path = Path(path)
    try:
        in_place = json.loads((path / JOURNAL).read_text()).get("from_frame") is not None
    except FileNotFoundError:
        return  # no write in progress (or it has just committed)
    except ValueError:
        in_place = True  # a journal torn by a kill while it was written: let recovery decide
    if not in_place:
        return
    try:
        with locked_store(path, command="a reader recovering an interrupted rewrite"):
            pass  # the lock's recovery rolls the rewrite back
    except LockedError as err:
        raise StoreError(f"{err}: late frames are being merged in; read it again in a moment") from err
    except OSError as err:
        raise StoreError(f"{path} holds an interrupted rewrite that cannot be rolled back here ({err}); "
                         "`nowcast ingest` into it (no files needed) recovers it") from err


def _rollback_append(path: Path) -> list[str]:
    """Undo an interrupted append of the store ``path`` (nothing if there is none)."""
    journal = path / JOURNAL
    if journal.is_file():
        saved = json.loads(journal.read_text())
        n, files = int(saved["frames"]), dict(saved["metadata"])
        zmeta = json.loads(files[".zmetadata"])["metadata"]
        chunks = {k: None if v is None else base64.b64decode(v) for k, v in saved["chunks"].items()}
    else:
        # a torn append of a writer without journal: the consolidated metadata, rewritten last,
        # still describes the committed frames
        zmeta = _consolidated(path)
        torn = [key for key, meta in zmeta.items() if key.endswith("/.zarray") and (path / key).is_file()
                and json.loads((path / key).read_text())["shape"] != meta["shape"]]
        if not torn:
            return []
        n = int(zmeta["time/.zarray"]["shape"][0])
        files = {key: json.dumps(meta, indent=4, sort_keys=True) for key, meta in zmeta.items()}
        chunks = {}
    # (a torn append without journal: the consolidated metadata on disk is the committed one)
    if ".zmetadata" not in files or (path / ".zmetadata").read_text() == files[".zmetadata"]:
        # readers see only the committed frames: free the space of the others first (after a
        # full disk, restoring the metadata below needs some)
        _drop_frames_beyond(path, zmeta, n)
    for key, text in files.items():
        atomic_write(path / key, text)
    for key, data in chunks.items():
        if data is None:
            (path / key).unlink(missing_ok=True)
        else:
            atomic_write(path / key, data)
    _drop_frames_beyond(path, zmeta, n)
    journal.unlink(missing_ok=True)
    fsync_path(path)
    return [f"recovered {path}: rolled back an interrupted append ({n} frames kept)"]


def _drop_frames_beyond(path: Path, zmeta: dict[str, Any], n: int) -> None:
    """Delete the chunks that lie wholly beyond frame ``n`` of every time array, and zarr's
    temporary ``*.partial`` files, in the store ``path`` described by ``zmeta``."""
    for array, axis, meta in _time_arrays(zmeta):
        first = math.ceil(n / meta["chunks"][axis])  # the first chunk wholly beyond frame n
        sep, ndim, folder = meta.get("dimension_separator") or ".", len(meta["shape"]), path / array
        for f in list(folder.rglob("*")):
            index = f.relative_to(folder).as_posix().split(sep)
            if f.is_file() and len(index) == ndim and all(i.isdigit() for i in index) \
                    and int(index[axis]) >= first:
                f.unlink()
        if sep == "/":  # nested chunk folders emptied above
            for d in sorted((d for d in folder.rglob("*") if d.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
        fsync_path(folder)
    for f in path.rglob("*.partial"):  # zarr's temporary files
        f.unlink()


def stored_index(path: str | Path) -> tuple[np.ndarray, xr.Dataset]:
    """(times (T,) datetime64[ns], the lazily opened store) of an existing store."""
    ds = read_store(path)
    validate_rain_dataset(ds)
    return ds.time.values, ds


def frames_dataset(rain: np.ndarray, times: Iterable, x: np.ndarray, y: np.ndarray, crs: str,
                   source_files: list[str], attrs: dict[str, Any]) -> xr.Dataset:
    """Schema dataset of (T, H, W) mm/h frames (thin wrapper naming the store's conventions)."""
    return make_rain_dataset(rain, np.asarray(list(times), dtype="datetime64[ns]"), x, y, crs,
                             source_files, attrs)


def crs_name(ds: xr.Dataset) -> str:
    """A readable name of the store's CRS (for messages and descriptions)."""
    from pyproj import CRS as ProjCRS

    attrs = ds[CRS].attrs
    try:
        name = ProjCRS.from_wkt(attrs["crs_wkt"]).name
    except Exception:  # an unparsable WKT is not fatal for a description
        name = "unknown"
    # CRSs built from bare proj4 strings are named "unknown": the CF mapping name says more
    return name if name != "unknown" else str(attrs.get("grid_mapping_name", "unknown"))


def export_netcdf(store_path: str | Path, nc_path: str | Path) -> Path:
    """Write the zarr store at ``store_path`` to a CF netCDF4 file (same variables and attributes).

    Streams frame by frame (dask) and compresses ``rain_rate`` with zlib. Returns ``nc_path``.
    """
    store_path, nc_path = Path(store_path), Path(nc_path)
    if not is_zarr_store(store_path):
        raise StoreError(f"not a zarr store: {store_path}")
    nc_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = nc_path.with_name(f"{nc_path.name}.tmp-{os.getpid()}")
    try:
        _export(store_path, tmp)
        fsync_path(tmp)
        tmp.replace(nc_path)  # readers see the old file or the whole new one
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(nc_path.parent)
    return nc_path


def _export(store_path: Path, tmp: Path) -> None:
    """The zarr store at ``store_path`` as CF netCDF4 at ``tmp`` (:func:`export_netcdf`)."""
    with read_store(store_path) as ds:
        validate_rain_dataset(ds)
        out = _strip_encoding(ds)
        out[CRS].attrs = complete_grid_mapping(out[CRS].attrs)  # a store ingested before the fix
        h, w = ds.sizes["y"], ds.sizes["x"]
        encoding = {RAIN: {"zlib": True, "complevel": 4, "chunksizes": (1, h, w), "_FillValue": np.nan},
                    "time": dict(TIME_ENCODING),
                    # CF: coordinate variables carry no fill value
                    **{c: {"_FillValue": None} for c in ("x", "y")}}
        out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
