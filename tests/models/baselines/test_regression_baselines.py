"""ConvLSTM and SimVP: contract, one-batch overfit, checkpoint round trip and refusal."""

from __future__ import annotations

import pytest
import torch
from learned_baseline_utils import N_IN, N_OUT, fit_one_batch

from nowcast.models import FORECASTERS, import_all, load_forecaster
from nowcast.models.checkpoint import CheckpointMismatchError
from nowcast.training.baseline_tasks import RegressionTask
from nowcast.types import PAST, WindowSpec

MODELS = ["convlstm", "simvp"]


def forecaster_class(name: str) -> type:
    import_all()
    return FORECASTERS.get(name)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_forecaster_contract(name: str, batch: dict[str, torch.Tensor]) -> None:
    forecaster = forecaster_class(name).tiny()
    past = batch[PAST][:, :, :30, :27]  # not a multiple of the network stride: padded inside
    rain = forecaster.forecast(past, n_out=5, members=3)
    assert rain.shape == (2, 1, 5, 30, 27)  # deterministic: one member whatever is asked
    assert torch.isfinite(rain).all() and (rain >= 0).all()
    with pytest.raises(ValueError, match="past frames"):
        forecaster.forecast(past[:, :2], n_out=5)


@pytest.mark.parametrize("name", MODELS)
def test_overfits_one_batch_and_round_trips(name: str, batch: dict[str, torch.Tensor], tmp_path) -> None:
    torch.manual_seed(0)
    # tiny nets: a high rate overfits fast
    task = RegressionTask(f"{name}:size=tiny", n_in=N_IN, n_out=N_OUT, lr=3e-3)
    with torch.no_grad():
        before = task.training_loss(batch).item()
    trainer = fit_one_batch(task, batch, batches=60)
    with torch.no_grad():
        after = task.training_loss(batch).item()
    assert after < 0.2 * before, (before, after)
    assert "val/csi_1" in trainer.callback_metrics and "val/mse" in trainer.callback_metrics

    path = task.export(tmp_path / f"{name}.pt")
    loaded = load_forecaster(name, path)
    expected = task.to_forecaster().forecast(batch[PAST], N_OUT)
    assert torch.equal(loaded.forecast(batch[PAST], N_OUT), expected)
    assert loaded.describe()["hparams"] == task.net_hparams

    loaded.check_fits(WindowSpec(n_in=N_IN, n_out=N_OUT))
    with pytest.raises(CheckpointMismatchError, match="past frames"):
        loaded.check_fits(WindowSpec(n_in=N_IN + 2, n_out=N_OUT))
    with pytest.raises(CheckpointMismatchError, match="lead times"):
        loaded.check_fits(WindowSpec(n_in=N_IN, n_out=N_OUT + 6))
    with pytest.raises(CheckpointMismatchError, match="holds a"):
        load_forecaster("simvp" if name == "convlstm" else "convlstm", path)


def test_bad_hparams_are_named() -> None:
    with pytest.raises(ValueError, match="bad hparams"):
        RegressionTask("simvp:size=tiny,hid_z=3")
    with pytest.raises(ValueError, match="unknown size"):
        RegressionTask("convlstm:size=huge")


def test_simvp_rolls_out_beyond_its_trained_horizon(batch: dict[str, torch.Tensor]) -> None:
    from nowcast.models.baselines.simvp import SimVPForecaster

    forecaster = SimVPForecaster.tiny()
    trained = forecaster.net.n_out
    short = forecaster.forecast(batch[PAST], n_out=trained)
    long = forecaster.forecast(batch[PAST], n_out=trained + 5)  # the last 4 outputs fed back
    assert long.shape[2] == trained + 5
    torch.testing.assert_close(long[:, :, :trained], short)
    assert not torch.equal(long[:, :, trained:], long[:, :, trained - 5 : trained])


def test_rain_weighted_loss_weights_each_error_by_the_observed_rain(batch: dict[str, torch.Tensor]) -> None:
    """Closed form: with a network that forecasts 0 in transform space, the loss is the masked
    mean of y² (plain) or of y² · min(R + 1, 24) (rain-weighted), R the observed mm/h."""
    from nowcast.training.baseline_tasks import rain_weight
    from nowcast.types import FUTURE, MASK

    assert rain_weight(torch.tensor([0.0, 2.0, 23.0, 100.0])).tolist() == [1.0, 3.0, 24.0, 24.0]
    plain = RegressionTask("convlstm:size=tiny", n_in=N_IN, n_out=N_OUT)
    weighted = RegressionTask("convlstm:size=tiny", n_in=N_IN, n_out=N_OUT, rain_weighted=True)
    for task in (plain, weighted):
        task.nets["net"].forward = lambda x, n_out, **kw: torch.zeros(x.shape[0], n_out, *x.shape[-2:])
    rain = batch[FUTURE][:, :N_OUT]
    y = plain.rain_transform.forward(rain)
    mask = batch[MASK][:, None].float().expand_as(y)
    plain_expected = (y**2 * mask).sum() / mask.sum()
    assert plain.training_loss(batch).item() == pytest.approx(plain_expected.item(), rel=1e-5)
    expected = (y**2 * (rain + 1).clamp(max=24) * mask).sum() / mask.sum()
    assert weighted.training_loss(batch).item() == pytest.approx(expected.item(), rel=1e-5)
    assert weighted.training_loss(batch) > plain.training_loss(batch)  # the batch has rain
