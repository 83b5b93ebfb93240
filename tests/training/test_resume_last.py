"""``--ckpt_path last`` resumes this configuration's newest training state, never another's that
shares ``trainer.default_root_dir``; with none of its own it is refused in one line."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from tiny_setup import write_data_config, write_train_config

from nowcast.cli import main
from nowcast.models.checkpoint import load_checkpoint
from nowcast.training.refusal import TrainingInputError
from nowcast.training.resume import matching_last_checkpoint, model_settings

DIM = "--model.init_args.model.args.dim"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("nowcast train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_last_skips_a_newer_state_of_another_configuration(tmp_path, caplog, capsys):
    torch.set_num_threads(1)
    data, config = write_data_config(tmp_path), write_train_config(tmp_path, logged=True)
    args = ["train", "fit", "--config", str(config), "--data", str(data)]
    logs = tmp_path / "runs" / "lightning_logs"
    assert main([*args, "--trainer.max_steps", "2"]) == 0  # version_0: this configuration
    assert main([*args, "--trainer.max_steps", "2", DIM, "8"]) == 0  # version_1: another, newer
    with caplog.at_level(logging.INFO, logger="nowcast.training.resume"):
        assert main([*args, "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0
    assert f"resuming {logs / 'version_0' / 'checkpoints' / 'last.ckpt'}" in caplog.text
    resumed = load_checkpoint(logs / "version_2" / "export" / "diffusion-last.pt")
    assert resumed["training"]["global_step"] == 4 and resumed["hparams"]["dim"] == 16

    # a third configuration has no state of its own there: refused, naming the newest and the fix
    assert main([*args, "--trainer.max_steps", "2", DIM, "32", "--ckpt_path", "last"]) == 2
    line = one_error_line(capsys)
    assert str(logs / "version_2" / "checkpoints" / "last.ckpt") in line
    assert "model.args.dim 16 in the checkpoint, 32 in this config" in line
    assert "--trainer.default_root_dir" in line and "drop --ckpt_path last" in line


def _state(path, mtime: int, **hparams) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"_instantiator": "x", **hparams}}, path)
    os.utime(path, (mtime, mtime))


def test_the_model_class_and_every_setting_must_match(tmp_path):
    class Task:
        pass

    mine = model_settings({"lr": 1.0, "model": {"args": {"dim": 16}}}, Task)
    cls = mine["_class_path"]
    _state(tmp_path / "a" / "last.ckpt", 100, _class_path=cls, lr=1.0, model={"args": {"dim": 16}})
    _state(tmp_path / "b" / "last.ckpt", 200, _class_path="other.Task", lr=1.0, model={"args": {"dim": 16}})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "last-v1.ckpt").write_bytes(b"truncated")
    os.utime(tmp_path / "c" / "last-v1.ckpt", (300, 300))
    assert matching_last_checkpoint(tmp_path, mine, "fix") == tmp_path / "a" / "last.ckpt"

    (tmp_path / "a" / "last.ckpt").unlink()
    with pytest.raises(TrainingInputError, match=r"the newest, .*last-v1.ckpt, differs: cannot be read"):
        matching_last_checkpoint(tmp_path, mine, "fix")
    (tmp_path / "c" / "last-v1.ckpt").unlink()
    with pytest.raises(TrainingInputError, match=r"differs: model class 'other.Task' in the checkpoint, "
                                                 rf"'{cls}' in this config; fix$"):
        matching_last_checkpoint(tmp_path, mine, "fix")
    assert matching_last_checkpoint(tmp_path / "b" / "empty", mine, "fix") is None


def test_validate_last_scores_this_configurations_state_or_is_refused(tmp_path, caplog, capsys):
    """Without a state, `validate --ckpt_path last` would score untrained weights: refused."""
    torch.set_num_threads(1)
    data, config = write_data_config(tmp_path), write_train_config(tmp_path, logged=True)
    args = ["--config", str(config), "--data", str(data)]
    assert main(["train", "validate", *args, "--ckpt_path", "last"]) == 2
    line = one_error_line(capsys)
    assert "no last*.ckpt under" in line and "nothing to validate but untrained weights" in line
    assert main(["train", "fit", *args, "--trainer.max_steps", "2"]) == 0
    with caplog.at_level(logging.INFO, logger="nowcast.training.resume"):
        assert main(["train", "validate", *args, "--ckpt_path", "last"]) == 0
    state = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert f"loading {state}" in caplog.text
