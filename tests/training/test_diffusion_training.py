"""`nowcast train fit` end to end on CPU: steps, validation, export, resumption from last.ckpt."""

from __future__ import annotations

import csv

import torch
from tiny_setup import N_OUT, write_data_config, write_train_config

from nowcast.commands.train import main as train_main
from nowcast.models.checkpoint import load_checkpoint
from nowcast.models.diffusion import DiffusionForecaster
from nowcast.types import GridSpec, WindowSpec


def test_train_fit_exports_and_resumes(tmp_path):
    torch.set_num_threads(1)
    data, config = write_data_config(tmp_path), write_train_config(tmp_path)
    args = ["fit", "--config", str(config), "--data", str(data)]
    assert train_main([*args, "--trainer.max_steps", "4"]) == 0
    runs = tmp_path / "runs"
    assert (runs / "checkpoints" / "last.ckpt").exists()
    best = load_checkpoint(runs / "export" / "diffusion-best.pt", forecaster="diffusion")
    assert "val/csi_1" in best["metrics"] and best["data"]["stores"] == {"synthetic": "synthetic.zarr"}
    assert load_checkpoint(runs / "export" / "diffusion-last.pt")["training"]["global_step"] == 4

    # a second run resumes the training state instead of starting over
    assert train_main([*args, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    last = load_checkpoint(runs / "export" / "diffusion-last.pt")
    assert last["training"]["global_step"] == 6
    model = DiffusionForecaster.from_checkpoint(runs / "export" / "diffusion-last.pt", steps=2)
    model.check_fits(WindowSpec(n_in=4, n_out=N_OUT), GridSpec(pixel_size_m=2000.0))
    past = torch.rand(1, 4, 32, 32) * 5
    assert model.forecast(past, N_OUT, members=2).shape == (1, 2, N_OUT, 32, 32)


def test_resume_finds_the_last_state_of_a_logged_run(tmp_path):
    """With a logger (the shipped configs) each run writes under a new lightning_logs/version_N;
    ``--ckpt_path last`` still resumes the previous run's state instead of starting over."""
    torch.set_num_threads(1)
    data, config = write_data_config(tmp_path), write_train_config(tmp_path, logged=True)
    args = ["fit", "--config", str(config), "--data", str(data)]
    assert train_main([*args, "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0  # nothing yet
    logs = tmp_path / "runs" / "lightning_logs"
    assert (logs / "version_0" / "checkpoints" / "last.ckpt").exists()
    assert train_main([*args, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    resumed = load_checkpoint(logs / "version_1" / "export" / "diffusion-last.pt")
    assert resumed["training"]["global_step"] == 6
    steps = [int(row["step"]) for row in csv.DictReader((logs / "version_1" / "metrics.csv").open())]
    assert min(steps) >= 4  # the second run trained steps 5 and 6 only: it resumed, not restarted
