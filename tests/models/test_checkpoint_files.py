"""nowcast.models.checkpoint: what a checkpoint file on disk can be, and how it is written."""

from __future__ import annotations

import os

import pytest
import torch

from nowcast.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

PAYLOAD = {"forecaster": "simvp", "hparams": {}, "transform": "dbz", "window": {}, "grid": {},
           "state_dict": {"net": {"w": torch.zeros(2)}}}


@pytest.mark.parametrize("content, reason", [(b"some text, not a model\n", "it starts with b'some'"),
                                             (b"", "it is empty")])
def test_a_file_that_is_not_a_torch_file_says_so(content, reason, tmp_path):
    """Not mistaken for a refused pickle: the message says what the file is."""
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a torch file") as err:
        load_checkpoint(path)
    assert reason in str(err.value) and "pickled" not in str(err.value)


def test_a_failed_save_keeps_the_old_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A write that fails (here the fsync, as on a full disk) leaves the exported file as it was."""
    path = tmp_path / "model.pt"
    save_checkpoint(path, PAYLOAD)
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(path, {**PAYLOAD, "hparams": {"other": 1}})
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pt"]
    assert load_checkpoint(path, forecaster="simvp")["state_dict"]["net"]["w"].shape == (2,)
