"""Late frames (times earlier than the store's last) merged in: the frames after them are rewritten
in place as a transaction, so that a late scan in a long-running operational store costs what its
tail costs, not a rewrite of the whole store (``python benchmarks/bench_late_scan.py``); a killed or
failed rewrite is rolled back, and readers never see it half done."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
from full_disk import disk_fills_at
from store_frames import frames
from tree_digest import tree_digest

from data_pipelines import store as zstore
from nowcast.data.store import open_store
from nowcast.fsutil import WriteError, WriterLock
from nowcast.schema import StoreError

#: stored at first (positions in a 12-frame event); 4, 7 and 11 come late
STORED = [0, 1, 2, 3, 5, 6, 8, 9, 10]


@pytest.fixture
def event() -> xr.Dataset:
    return frames(0, 12)


@pytest.fixture
def store(event, tmp_path) -> Path:
    path = tmp_path / "s.zarr"
    zstore.create_store(event.isel(time=STORED), path)
    return path


def _assert_holds(path: Path, event: xr.Dataset, positions: list[int]) -> None:
    xr.testing.assert_identical(zstore.read_store(path).load(),
                                zstore.read_store(_fresh(event, positions, path.parent)).load())


def _fresh(event: xr.Dataset, positions: list[int], folder: Path) -> Path:
    """The same frames written in order into a new store (the reference)."""
    path = folder / f"fresh-{len(positions)}.zarr"
    if not path.exists():
        zstore.create_store(event.isel(time=positions), path)
    return path


def test_late_frames_are_merged_in_place(event, store, monkeypatch):
    def no_full_rewrite(*args, **kwargs):
        raise AssertionError("the whole store was rewritten for three late frames")

    monkeypatch.setattr(zstore, "replace_zarr", no_full_rewrite)
    with zstore.locked_store(store):
        zstore.merge_store(event.isel(time=[7, 4, 11]), store)
    _assert_holds(store, event, list(range(12)))  # data, times, attributes: as if written in order
    assert sorted(p.name for p in store.parent.iterdir()) == ["fresh-12.zarr", "s.zarr"]


def test_a_late_frame_far_behind_rewrites_the_whole_store(event, store, monkeypatch):
    monkeypatch.setattr(zstore, "MAX_TAIL_FRAMES", 3)  # 3 stored frames after frame 7, then 6 after 4
    calls = []
    replace = zstore.replace_zarr
    monkeypatch.setattr(zstore, "replace_zarr", lambda *a: calls.append(1) or replace(*a))
    with zstore.locked_store(store):
        zstore.merge_store(event.isel(time=[7]), store)
        assert calls == []
        zstore.merge_store(event.isel(time=[4]), store)
        assert calls == [1]
    _assert_holds(store, event, list(range(11)))


def test_a_failed_rewrite_in_place_is_rolled_back(event, store, monkeypatch):
    digest = tree_digest(store)
    # the tail after frame 4 (5 frames) is rewritten first, then one frame appended: fail there
    disk_fills_at(monkeypatch, n=5)
    with pytest.raises(WriteError), zstore.locked_store(store):
        zstore.merge_store(event.isel(time=[4]), store)
    assert tree_digest(store) == digest


def test_readers_never_see_a_killed_rewrite_half_done(event, store, monkeypatch):
    before = zstore.read_store(store).load()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the tail was rewritten, before the append

    monkeypatch.setattr(zstore, "fsync_tree", killed)
    with pytest.raises(KeyboardInterrupt), zstore.locked_store(store):
        zstore.merge_store(event.isel(time=[4]), store)
    monkeypatch.undo()
    assert (store / zstore.JOURNAL).is_file()
    shifted = zstore.read_store(store).load()  # what a reader without recovery gets
    assert not shifted.rain_rate.identical(before.rain_rate)
    xr.testing.assert_identical(open_store(store).load(), before)
    assert not (store / zstore.JOURNAL).exists()


def test_a_rewrite_in_progress_is_waited_for_not_read(store):
    with WriterLock(store):
        zstore._begin_append(store, from_frame=5)  # what a live writer has done so far
        with pytest.raises(StoreError, match="being written by pid .* read it again in a moment"):
            open_store(store)
    open_store(store)  # its writer gone, the next reader rolls the rewrite back
    assert not (store / zstore.JOURNAL).exists()
