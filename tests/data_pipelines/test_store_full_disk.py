"""A store written on a disk that fills up (simulated as measured on a tmpfs: ``full_disk``): the
write fails in one line naming the store, the store stays exactly as it was, and nothing the failed
write began is left to keep the disk full, not even by zarr's chunk writes that land after the error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from full_disk import LATE_S, disk_fills_at
from store_frames import frames
from tree_digest import tree_digest

from data_pipelines import store as zstore
from nowcast.cli import main as cli_main
from nowcast.fsutil import WriteError

FULL = "No space left on device (disk full or not writable?)"


def _nothing_left_beside(store: Path) -> list[Path]:
    return sorted(p for p in store.parent.iterdir() if p != store)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    zstore.create_store(frames(0, 4), path)
    return path


def test_append_on_a_full_disk_is_rolled_back_at_once(store, monkeypatch):
    digest = tree_digest(store)
    disk_fills_at(monkeypatch, n=1)
    with pytest.raises(WriteError) as err:
        zstore.append_store(frames(4, 6), store)
    assert str(err.value) == f"cannot write {store}: {FULL}"
    time.sleep(3 * LATE_S)  # what zarr was still writing has landed by now, or never will
    # the very bytes of before: no journal, no chunk of the frames that were not appended
    assert tree_digest(store) == digest and not _nothing_left_beside(store)
    monkeypatch.undo()
    zstore.append_store(frames(4, 6), store)  # with space again, the same append works
    assert zstore.read_store(store).sizes["time"] == 10


def test_a_new_store_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "new.zarr"
    disk_fills_at(monkeypatch, n=1)
    with pytest.raises(WriteError, match=f"^cannot write {path}: "):
        zstore.create_store(frames(0, 6), path)
    time.sleep(3 * LATE_S)
    assert list(tmp_path.iterdir()) == []


def test_a_merge_on_a_full_disk_keeps_the_store(store, monkeypatch):
    zstore.append_store(frames(6, 2), store)  # frames 4 and 5 missing: merging them rewrites the store
    digest = tree_digest(store)
    disk_fills_at(monkeypatch, n=1)
    with pytest.raises(WriteError, match=f"^cannot write {store}: "):
        zstore.merge_store(frames(4, 2), store)
    time.sleep(3 * LATE_S)
    assert tree_digest(store) == digest and not _nothing_left_beside(store)


def test_ingest_on_a_full_disk_says_so_in_one_line(mch_files, tmp_path, monkeypatch, capsys):
    store = tmp_path / "mch.zarr"
    assert cli_main(["ingest", *map(str, mch_files[:2]), "--store", str(store), "--progress", "false"]) == 0
    digest = tree_digest(store)
    capsys.readouterr()
    disk_fills_at(monkeypatch, n=1)
    code = cli_main(["ingest", *map(str, mch_files), "--store", str(store), "--progress", "false"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"nowcast ingest: error: cannot write {store}: {FULL}" in err.splitlines()
    time.sleep(3 * LATE_S)
    assert tree_digest(store) == digest
