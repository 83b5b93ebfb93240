"""The checkpoints shipped in nowcast/checkpoints load offline, forecast in mm/h and refuse
a setup they were not built for; the default `nowcast forecast` model is one of them."""

from __future__ import annotations

import pytest
import torch
import yaml

from nowcast.models import load_forecaster
from nowcast.models.cards import shipped_cards
from nowcast.models.checkpoint import CheckpointMismatchError, load_checkpoint
from nowcast.models.diffusion.forecaster import RAW_SAMPLES
from nowcast.models.learned import CHECKPOINT_DIR
from nowcast.models.spec import ModelSpec
from nowcast.types import GridSpec, WindowSpec, repo_root

SHIPPED = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt")
                 if not p.stem.startswith("diffusion-adversarial"))  # generators load through "diffusion"
CASES = [(name, {}) for name in SHIPPED] + [
    ("diffusion", {"sampler": "adversarial", "steps": k}) for k in (1, 2, 4)
    if (CHECKPOINT_DIR / f"diffusion-adversarial-{k}.pt").exists()
]


@pytest.fixture(scope="module")
def past() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rain = torch.rand(1, 4, 32, 32, generator=g) * 8
    return torch.where(rain > 4, rain, torch.zeros_like(rain))


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda c: str(c))
def test_shipped_checkpoint_forecasts(name, kwargs, past):
    model = load_forecaster(name, **kwargs)
    info = model.describe()
    assert info["checkpoint"].endswith(f"{name}.pt") and len(info["checkpoint_sha256"]) == 64
    motion = torch.zeros(1, 2, 32, 32)
    gen = torch.Generator().manual_seed(1)
    rain = model.forecast(past, 3, 2, gen, motion=motion)
    assert rain.shape[2:] == (3, 32, 32) and rain.shape[1] in (1, 2)
    assert torch.isfinite(rain).all() and (rain >= 0).all()
    assert float(rain.max()) < 500.0  # mm/h: no runaway values


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_refuses_other_setups(name):
    model = load_forecaster(name)
    model.check_fits(WindowSpec(n_in=4, n_out=12), GridSpec(pixel_size_m=2000.0))
    with pytest.raises(CheckpointMismatchError, match="past frames"):
        model.check_fits(WindowSpec(n_in=6, n_out=12), GridSpec(pixel_size_m=2000.0))
    with pytest.raises(CheckpointMismatchError, match="m pixels"):
        model.check_fits(WindowSpec(n_in=4, n_out=12), GridSpec(pixel_size_m=1000.0))
    with pytest.raises(CheckpointMismatchError, match="time step"):
        model.check_fits(WindowSpec(n_in=4, n_out=12, timestep_minutes=6.0), GridSpec(pixel_size_m=2000.0))


def test_shipped_checkpoints_carry_their_training_record():
    for name in SHIPPED:
        ckpt = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt", forecaster=name)
        assert "val/csi_1" in ckpt["metrics"] and ckpt["data"]["splits"]["train"], name


def test_default_forecast_model_loads():
    cfg = yaml.safe_load((repo_root() / "configs" / "forecast.yaml").read_text())
    spec = ModelSpec.parse(cfg["model"])
    assert spec.load().name == spec.name


def test_a_shipped_file_brings_the_settings_its_card_scored():
    """``diffusion`` with no arguments forecasts as its model card scored it; given arguments win."""
    card = shipped_cards()["diffusion.pt"]
    assert card.forecast_args, "the diffusion card states the settings it was scored with"
    model = load_forecaster("diffusion")
    assert model.match == card.forecast_args["match"]
    assert model.motion_perturbation == card.forecast_args["motion_perturbation"]
    raw = load_forecaster("diffusion", **RAW_SAMPLES)  # what benchmarks of the sampling itself use
    assert (raw.match, raw.motion_perturbation) == ("none", 0.0)
