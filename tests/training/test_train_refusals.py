"""Refused input to `nowcast train`: one line on stderr naming the problem, exit 2, before the first
step (the package's CLI contract); a failure once training runs keeps its traceback."""

from __future__ import annotations

import pytest
import torch
from tiny_setup import one_error_line, write_data_config, write_train_config

from nowcast.cli import main
from nowcast.models.learned import CHECKPOINT_DIR
from nowcast.training.diffusion_task import DiffusionTask


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return write_data_config(tmp), write_train_config(tmp), tmp


def train(configs, *extra: str, subcommand: str = "fit") -> int:
    data, config, _ = configs
    return main(["train", subcommand, "--config", str(config), "--data", str(data),
                 "--trainer.max_steps", "2", *extra])



def checkpoint_file(case: str, tmp) -> str:
    """A ``--model.init_args.model.checkpoint`` that a diffusion fit must refuse."""
    if case == "truncated":
        path = tmp / "truncated.pt"
        path.write_bytes((CHECKPOINT_DIR / "diffusion.pt").read_bytes()[:100_000])
    elif case == "lightning":
        path = tmp / "last.ckpt"
        torch.save({"state_dict": {}, "hyper_parameters": {}, "pytorch-lightning_version": "2.6.6"}, path)
    else:
        path = {"missing": tmp / "missing.pt", "other model": CHECKPOINT_DIR / "simvp.pt",
                "other sizes": CHECKPOINT_DIR / "diffusion.pt"}[case]
    return str(path)


@pytest.mark.parametrize("case, expected", [
    ("missing", "checkpoint not found"),
    ("truncated", "is truncated or not a torch file"),
    ("lightning", "is not a nowcast checkpoint"),
    ("other model", "holds a 'simvp' model, not 'diffusion'"),
    ("other sizes", "dim 96 in the checkpoint, 16 in this config"),
])
def test_a_bad_checkpoint_to_start_from_is_one_line(case, expected, configs, capsys):
    path = checkpoint_file(case, configs[2])
    assert train(configs, "--model.init_args.model.checkpoint", path) == 2
    line = one_error_line(capsys)
    assert expected in line and path in line


@pytest.mark.parametrize("option, value, expected", [
    ("--data.batch_size", "0", "batch_size must be >= 1, got 0"),
    ("--model.init_args.n_out", "0", "DiffusionTask: n_out must be >= 1, got 0"),
    ("--data.n_out", "2", "the model predicts 3 frames"),
    ("--data.splits.val", "[]", "split 'val' has no windows"),
    ("--model.init_args.model.args.bogus", "1", "model 'diffusion': unknown setting 'bogus'; known: "),
])
def test_bad_options_are_one_line_before_the_first_step(option, value, expected, configs, capsys):
    assert train(configs, option, value) == 2
    line = one_error_line(capsys)
    assert expected in line and "Namespace(" not in line


def test_validate_refuses_an_empty_validation_split(configs, capsys):
    assert train(configs, "--data.splits.val", "[]", subcommand="validate") == 2
    assert "split 'val' has no windows" in one_error_line(capsys)


def test_a_failure_once_training_runs_keeps_its_traceback(configs, monkeypatch):
    def broken(self, batch):
        raise ValueError("a bug in the loss")

    monkeypatch.setattr(DiffusionTask, "training_loss", broken)
    with pytest.raises(ValueError, match="a bug in the loss"):
        train(configs)
