"""Export -> DiffusionForecaster.from_checkpoint round trip, and refusal of other setups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.synthetic import synthetic_rain
from nowcast.models import load_forecaster
from nowcast.models.checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from nowcast.models.diffusion import DiffusionForecaster, SpatioTemporalTransformer
from nowcast.training.diffusion_task import DiffusionTask
from nowcast.types import GridSpec, WindowSpec


@pytest.fixture(scope="module")
def task() -> DiffusionTask:
    torch.manual_seed(0)
    task = DiffusionTask("diffusion:dim=16,depth=1,heads=2,patch=4", n_in=4, n_out=3, val_steps=2)
    with torch.no_grad():  # leave adaLN-zero's identity start so that members differ
        for p in task.ema.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return task


@pytest.fixture(scope="module")
def past() -> torch.Tensor:
    return torch.from_numpy(np.nan_to_num(synthetic_rain(4, 32, 32, seed=2)))[None]


def test_export_round_trip_gives_identical_forecasts(task, past, tmp_path):
    path = task.export(tmp_path / "diffusion.pt")
    ckpt = load_checkpoint(path, forecaster="diffusion")
    assert ckpt["grid"]["pixel_size_m"] == 2000.0 and ckpt["window"]["n_out"] == 3
    assert ckpt["transform"]["name"] == "dbz" and set(ckpt["state_dict"]) == {"denoiser"}
    loaded = load_forecaster("diffusion", path, steps=2)
    assert isinstance(loaded, DiffusionForecaster) and not loaded.deterministic
    live = task.to_forecaster(steps=2)
    a = live.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(7))
    b = loaded.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(7))
    assert a.shape == (1, 2, 3, 32, 32)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[:, 0], a[:, 1])
    assert loaded.describe()["checkpoint_sha256"] and loaded.describe()["sampler"] == "ddim"


def test_refuses_other_frame_count_grid_and_model(task, past, tmp_path):
    path = task.export(tmp_path / "diffusion.pt")
    model = DiffusionForecaster.from_checkpoint(path)
    model.check_fits(WindowSpec(n_in=4, n_out=3), GridSpec(pixel_size_m=2000.0))
    with pytest.raises(CheckpointMismatchError, match="4 past frames, given 6"):
        model.check_fits(WindowSpec(n_in=6, n_out=3))
    with pytest.raises(CheckpointMismatchError, match="up to 3 lead times"):
        model.check_fits(WindowSpec(n_in=4, n_out=12))
    with pytest.raises(CheckpointMismatchError, match="2000 m pixels, data has 1000 m"):
        model.check_fits(grid=GridSpec(pixel_size_m=1000.0))
    with pytest.raises(ValueError, match="up to 3 frames"):
        model.forecast(past, 12)
    # frames that are not a multiple of the patch size are padded, then cropped back
    assert model.forecast(past[..., :30, :30], 3).shape[-2:] == (30, 30)
    other = load_checkpoint(path)
    other["forecaster"] = "convlstm"
    del other["format"]
    save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(CheckpointMismatchError, match="'convlstm' model, not 'diffusion'"):
        DiffusionForecaster.from_checkpoint(tmp_path / "other.pt")


def test_adversarial_sampler_needs_a_generator_checkpoint(task, tmp_path):
    path = task.export(tmp_path / "diffusion.pt")
    with pytest.raises(ValueError, match="sampler_checkpoint"):
        DiffusionForecaster.from_checkpoint(path, sampler="adversarial")
    with pytest.raises(CheckpointMismatchError, match="no adversarial generator"):
        DiffusionForecaster.from_checkpoint(path, sampler="adversarial", sampler_checkpoint=path)


def test_adversarial_sampler_runs_a_stored_generator(task, past, tmp_path):
    path = task.export(tmp_path / "diffusion.pt")
    payload = task.checkpoint_payload()
    gen_args = {**task.net_hparams, "z_dim": 4}
    generator = SpatioTemporalTransformer(**gen_args)
    generator.load_state_dict(task.ema.state_dict(), strict=False)  # initialised from the denoiser
    torch.nn.init.normal_(generator.z_proj.weight)
    payload["hparams"] = {**payload["hparams"], "generator": gen_args}
    payload["state_dict"] = {"generator": generator.state_dict()}
    save_checkpoint(tmp_path / "adversarial.pt", payload)
    model = DiffusionForecaster.from_checkpoint(path, sampler="adversarial", steps=2,
                                                sampler_checkpoint=tmp_path / "adversarial.pt")
    a = model.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(1))
    b = model.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(1))
    assert a.shape == (1, 2, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a[:, 0], a[:, 1])


def test_lagrangian_past_survives_the_export(tmp_path):
    """A model conditioned on the aligned past must be rebuilt so: the same forecasts after loading."""
    torch.manual_seed(0)
    args = dict(architecture="hybrid", channels=[8, 16], dim=16, depth=1, heads=2, coarsen=2,
                residual_scale=0.5, prediction_type="x0", lagrangian_past=True)
    task = DiffusionTask({"name": "diffusion", "args": args}, n_in=4, n_out=3, val_steps=2)
    with torch.no_grad():
        for p in task.ema.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    loaded = load_forecaster("diffusion", task.export(tmp_path / "lagrangian.pt"), steps=2)
    assert loaded.diffusion.lagrangian_past
    past = torch.from_numpy(np.nan_to_num(synthetic_rain(4, 32, 32, seed=2)))[None]
    a = task.to_forecaster(steps=2).forecast(past, 3, members=2, generator=torch.Generator().manual_seed(7))
    b = loaded.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
