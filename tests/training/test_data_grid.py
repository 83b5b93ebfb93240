"""A task is built for its data: the exported checkpoint records the stores' pixel size and time step,
and a checkpoint built for others is refused, whether a fit starts from it or resumes it."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny_setup import N_OUT, one_error_line, write_data_config, write_train_config

from nowcast.cli import main
from nowcast.data.datamodule import from_config
from nowcast.data.store import describe_store, open_store
from nowcast.models.base import bind_to_store
from nowcast.models.checkpoint import load_checkpoint
from nowcast.models.diffusion import DiffusionForecaster
from nowcast.models.spec import ModelSpec
from nowcast.training.adversarial_task import AdversarialTask
from nowcast.training.diffusion_task import DiffusionTask
from nowcast.types import GridSpec, WindowSpec

TINY = {"dim": 16, "depth": 1, "heads": 2, "patch": 4}


def fit(tmp, *extra: str) -> int:
    """`nowcast train fit` of the tiny diffusion config on ``tmp``'s data for 2 steps."""
    return main(["train", "fit", "--config", str(tmp / "train.yaml"), "--data", str(tmp / "data.yaml"),
                 "--trainer.max_steps", "2", *extra])



def test_the_data_module_serves_its_stores_step_and_pixel_size(tmp_path):
    dm = from_config(write_data_config(tmp_path, pixel_size_m=1000.0, timestep_minutes=10.0))
    dm.setup("fit")
    window, grid = dm.served()
    assert (window.n_in, window.n_out, window.timestep_minutes, grid.pixel_size_m) == (4, N_OUT, 10.0, 1000.0)


def test_a_model_trained_on_a_1_km_10_min_store_is_exported_for_it(tmp_path):
    torch.set_num_threads(1)
    write_data_config(tmp_path, pixel_size_m=1000.0, timestep_minutes=10.0)
    write_train_config(tmp_path)
    assert fit(tmp_path) == 0
    exported = tmp_path / "runs" / "export" / "diffusion-last.pt"
    ckpt = load_checkpoint(exported)
    assert ckpt["grid"]["pixel_size_m"] == 1000.0 and ckpt["window"]["timestep_minutes"] == 10.0
    # what `nowcast forecast` does before the first forecast: the model runs on its own store
    store = {"path": "synthetic.zarr", **describe_store(open_store(tmp_path / "synthetic.zarr"))}
    bind_to_store(DiffusionForecaster.from_checkpoint(exported), store, n_out=N_OUT)


def test_a_2_km_model_is_neither_continued_nor_resumed_on_a_1_km_store(tmp_path, capsys):
    torch.set_num_threads(1)
    write_data_config(tmp_path)
    write_train_config(tmp_path)
    assert fit(tmp_path) == 0
    runs = tmp_path / "runs"
    shutil.copy(runs / "export" / "diffusion-last.pt", tmp_path / "2km.pt")
    shutil.copy(runs / "checkpoints" / "last.ckpt", tmp_path / "2km.ckpt")
    write_data_config(tmp_path, pixel_size_m=1000.0)

    assert fit(tmp_path, "--model.init_args.model.checkpoint", str(tmp_path / "2km.pt")) == 2
    assert "built for 2000 m pixels, data has 1000 m" in one_error_line(capsys)
    assert fit(tmp_path, "--ckpt_path", str(tmp_path / "2km.ckpt")) == 2
    assert "built for 2000 m pixels, data has 1000 m" in one_error_line(capsys)


def test_an_explicit_time_step_or_pixel_size_is_what_the_data_must_have():
    task = DiffusionTask(ModelSpec("diffusion", TINY), n_out=N_OUT, pixel_size_m=2000.0)
    task.bind_to_data(WindowSpec(4, N_OUT, timestep_minutes=10.0), GridSpec(1999.35))  # FMI's 2 km
    assert task.window.timestep_minutes == 10.0 and task.grid.pixel_size_m == 2000.0
    with pytest.raises(ValueError, match="built for 2000 m pixels, the data have 1000 m .*pixel_size_m"):
        task.bind_to_data(WindowSpec(4, N_OUT), GridSpec(1000.0))
    with pytest.raises(ValueError, match="the model predicts 3 frames, the data's windows have 2"):
        task.bind_to_data(WindowSpec(4, 2), GridSpec(2000.0))


def test_the_adversarial_stage_trains_on_its_base_models_grid_only(tmp_path):
    base = DiffusionTask(ModelSpec("diffusion", TINY), n_out=N_OUT).export(tmp_path / "base.pt")
    task = AdversarialTask(ModelSpec("diffusion", {"steps": 2}, str(base)), z_dim=4, disc_channels=8,
                           disc_depth=1)
    task.bind_to_data(WindowSpec(4, N_OUT), GridSpec(2000.0))
    with pytest.raises(ValueError, match=r"built for a 5-min time step, the data have 10 min .*base\.pt"):
        task.bind_to_data(WindowSpec(4, N_OUT, timestep_minutes=10.0), GridSpec(2000.0))
