"""nowcast.fsutil: atomic writes leave the old file or the new one, and nothing else."""

from __future__ import annotations

import os

import pytest

from nowcast.fsutil import atomic_write


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "status.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["status.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    """A write that fails half way (here the final fsync, as on a full disk) leaves the old file
    as it was and no temporary file behind."""
    target = tmp_path / "status.json"
    atomic_write(target, "old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["status.json"]
