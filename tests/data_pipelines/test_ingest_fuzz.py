"""Property test of the importers and the store writer (issue 11, "Also expected"): a real file
of each network, replaced by random bytes, truncated, or with its header bytes or metadata
edited, is ingested into an existing store. Whatever it holds: the ingest returns (never
crashes), the file is either stored with believable values or skipped with a reason, and every
frame stored before is unchanged, bit for bit."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data_pipelines.ingest import ingest_files
from data_pipelines.sources import get_source
from nowcast.data.store import open_store

pytestmark = pytest.mark.realdata

#: frames per store: coarse, so each example stays fast
COARSEN = 8
NETWORKS = ("knmi", "fmi", "mch", "rmi", "bom")
#: metadata a reader trusts, per network with editable metadata: (object path, attribute)
HEADER_ATTRS = {
    "knmi": [("image1", "image_geo_parameter"), ("image1/calibration", "calibration_formulas"),
             ("image1/calibration", "calibration_out_of_image"), ("geographic", "geo_pixel_size_x"),
             ("geographic", "geo_number_columns"), ("geographic/map_projection", "projection_proj4_params"),
             ("overview", "product_datetime_start")],
    "bom": [("precipitation", "scale_factor"), ("precipitation", "units"), ("x", "units"),
            ("start_time", "units"), ("proj", "grid_mapping_name")],
}
ATTR_VALUES = st.one_of(st.text(st.characters(codec="utf-8"), max_size=40), st.floats(),
                        st.integers(-2**31, 2**31 - 1))


def renamed(path: Path, source: str, time: dt.datetime) -> str:
    """``path``'s file name with its valid time replaced by ``time``."""
    spec = get_source(source)
    m = re.search(spec.time_regex, path.name)
    return path.name[:m.start(1)] + time.strftime(spec.time_format) + path.name[m.end(1):]


def edit_attribute(path: Path, source: str, where: str, name: str, value: object) -> None:
    if source == "knmi":
        import h5py

        with h5py.File(path, "r+") as f:
            f[where].attrs[name] = np.bytes_(value.encode()) if isinstance(value, str) else value
    else:
        import netCDF4

        with netCDF4.Dataset(path, "r+") as nc:
            nc[where].setncattr(name, value)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, tuple]:
    """(network, kind, arguments) of one way to break one of its real files."""
    source = draw(st.sampled_from(NETWORKS))
    kinds = ["random", "truncate", "overwrite"] + (["attribute"] if source in HEADER_ATTRS else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "random":
        args: tuple = (draw(st.binary(max_size=4096)),)
    elif kind == "truncate":
        args = (draw(st.floats(0.0, 0.999)),)
    elif kind == "overwrite":  # the header: the first 4 KB
        args = (draw(st.integers(0, 4095)), draw(st.binary(min_size=1, max_size=32)))
    else:
        args = (*draw(st.sampled_from(HEADER_ATTRS[source])), draw(ATTR_VALUES))
    return source, kind, args


def mutate(real: Path, out: Path, source: str, kind: str, args: tuple) -> None:
    if kind == "random":
        out.write_bytes(args[0])
        return
    data = real.read_bytes()
    if kind == "truncate":
        out.write_bytes(data[: int(len(data) * args[0])])
    elif kind == "overwrite":
        offset, patch = args
        out.write_bytes(data[:offset] + patch + data[offset + len(patch):])
    else:
        shutil.copyfile(real, out)
        edit_attribute(out, source, *args)


@pytest.fixture(scope="module")
def stores() -> dict[str, Path]:
    """network -> its store (two real frames, then whatever the examples added), made on first use."""
    return {}


def existing_store(stores: dict[str, Path], source: str, event_files: Callable[..., list[Path]],
                   folder: Path) -> Path:
    if source not in stores:
        stores[source] = folder / f"{source}.zarr"
        assert ingest_files(event_files(source, 2), stores[source], coarsen=COARSEN).ok
    return stores[source]


def stored_frames(store: Path) -> dict[np.datetime64, np.ndarray]:
    """time -> rain (mm/h) of every frame in ``store``."""
    with open_store(store) as ds:
        return dict(zip(ds.time.values, ds.rain_rate.values, strict=True))


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations(), earlier=st.booleans(), step=st.integers(1, 1000))
# always tried: a scale that turns counts into impossible amounts, a sign flip (negative rain)
@example(mutation=("bom", "attribute", ("precipitation", "scale_factor", 1e6)), earlier=False, step=1)
@example(mutation=("bom", "attribute", ("precipitation", "scale_factor", -0.05)), earlier=True, step=1)
def test_broken_files_are_skipped_and_stored_frames_never_change(mutation, earlier, step, stores,
                                                                 event_files, tmp_path_factory):
    source, kind, args = mutation
    folder = tmp_path_factory.getbasetemp() / "fuzz"
    folder.mkdir(exist_ok=True)
    store = existing_store(stores, source, event_files, folder)
    real = event_files(source, 1, start=5)[0]
    before = stored_frames(store)
    # a time not stored yet: after the last frame (append) or before the first (merge rewrite)
    first, last = min(before), max(before)
    when = (first - np.timedelta64(5 * step, "m")) if earlier else (last + np.timedelta64(5 * step, "m"))
    path = folder / renamed(real, source, when.astype("datetime64[s]").astype(dt.datetime))
    mutate(real, path, source, kind, args)
    try:
        report = ingest_files([path], store, coarsen=COARSEN)  # must not raise, whatever the file
    finally:
        path.unlink(missing_ok=True)
    assert (len(report.ingested), len(report.skipped)) in ((1, 0), (0, 1)), report.summary()
    if report.skipped:
        assert report.skipped[0][0] == str(path) and report.skipped[0][1].strip()
    open_store(store, check_values=True).close()  # believable values only
    after = stored_frames(store)
    assert len(after) == len(before) + len(report.ingested)
    for t, rain in before.items():
        np.testing.assert_array_equal(after[t], rain)
