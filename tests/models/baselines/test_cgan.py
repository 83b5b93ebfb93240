"""Conditional GAN: ensemble contract, one-batch fit (manual optimisation), checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from learned_baseline_utils import N_IN, N_OUT, fit_one_batch

from nowcast.models import load_forecaster
from nowcast.models.baselines.cgan import CGANForecaster, SpatialDiscriminator, TemporalDiscriminator
from nowcast.models.checkpoint import CheckpointMismatchError
from nowcast.training.baseline_tasks import CGANTask
from nowcast.types import FUTURE, PAST, WindowSpec


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_members_differ_and_are_reproducible(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)  # fixed untrained weights: about 1 draw in 40 maps every member to 0 mm/h
    forecaster = CGANForecaster.tiny()
    past = batch[PAST][:, :, :30, :27]  # padded to the network stride inside
    rain = forecaster.forecast(past, n_out=5, members=3, generator=_seeded())
    assert rain.shape == (2, 3, 5, 30, 27)
    assert torch.isfinite(rain).all() and (rain >= 0).all()
    assert not torch.equal(rain[:, 0], rain[:, 1]) and not torch.equal(rain[:, 1], rain[:, 2])
    assert torch.equal(forecaster.forecast(past, n_out=5, members=3, generator=_seeded()), rain)
    # the members of one batched pass are the same draws as asked one case at a time
    first = forecaster.forecast(past[:1], n_out=5, members=3, generator=_seeded())
    torch.testing.assert_close(first, rain[:1], rtol=1e-4, atol=1e-3)  # batched float sums differ


def test_discriminators_score_each_sample() -> None:
    frames = torch.rand(3, N_OUT, 32, 32)
    assert SpatialDiscriminator(base=4, n_blocks=3, n_frames=2)(frames).shape == (3,)
    seq = torch.rand(3, N_IN + N_OUT, 32, 32)
    assert TemporalDiscriminator(base=4, n_blocks=3, crop=16)(seq).shape == (3,)


def test_fits_one_batch_and_round_trips(batch: dict[str, torch.Tensor], tmp_path) -> None:
    torch.manual_seed(0)
    task = CGANTask("cgan:size=tiny", d_base=4, d_blocks=3, d_frames=2, d_crop=16, n_samples=2,
                    n_in=N_IN, n_out=N_OUT, lr=3e-3, lr_d=3e-3, val_members=2)

    def grid_cell() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return task.generator_losses(batch)["grid_cell"].item()

    before = grid_cell()
    trainer = fit_one_batch(task, batch, batches=40)
    after = grid_cell()
    assert after < 0.4 * before, (before, after)  # an L1 (not squared) error: 0.4 is a big fall
    assert {"train/d_loss", "val/csi_1", "val/mse"} <= set(trainer.callback_metrics)

    path = task.export(tmp_path / "cgan.pt")
    loaded = load_forecaster("cgan", path)
    expected = task.to_forecaster().forecast(batch[PAST], N_OUT, members=2, generator=_seeded(3))
    assert torch.equal(loaded.forecast(batch[PAST], N_OUT, members=2, generator=_seeded(3)), expected)
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["state_dict"]) == {"net"}  # the discriminators are not shipped
    assert "val/csi_1" in ckpt["metrics"] and ckpt["training"]["task"] == "CGANTask"

    with pytest.raises(CheckpointMismatchError, match="past frames"):
        loaded.check_fits(WindowSpec(n_in=N_IN - 1, n_out=N_OUT))
    with pytest.raises(ValueError, match="future frames"):
        task.model_space({**batch, FUTURE: batch[FUTURE][:, :2]})


def test_discriminator_warmup_leaves_the_generator_alone(batch: dict[str, torch.Tensor]) -> None:
    """``d_warmup`` batches train the discriminators only; the generator learns after them."""
    torch.manual_seed(0)
    task = CGANTask("cgan:size=tiny", d_base=4, d_blocks=3, d_frames=2, d_crop=16, n_samples=2,
                    n_in=N_IN, n_out=N_OUT, lr=3e-3, lr_d=3e-3, val_members=2, d_warmup=3)

    def weights(module: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    g0, d0 = weights(task.net), weights(task.d_spatial)
    trainer = fit_one_batch(task, batch, batches=3)
    assert trainer.global_step == 3  # one discriminator step per warm-up batch
    assert same(weights(task.net), g0) and not same(weights(task.d_spatial), d0)
    assert "train/g_adv" not in trainer.callback_metrics
    fit_one_batch(task, batch, batches=1)  # a new fit restarts the count: still warm-up
    assert same(weights(task.net), g0)
    task.d_warmup = 0
    fit_one_batch(task, batch, batches=1)
    assert not same(weights(task.net), g0)
