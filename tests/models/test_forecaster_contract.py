"""One contract test class run over every registered forecaster (learned ones added later too).

Learned forecasters are built small and untrained through ``cls.tiny()``; the others through
``load_forecaster(name)``. Checks that only make sense for a model that actually forecasts
(scale preserved, dry stays dry) are limited to the non-learned ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nowcast.data.synthetic import synthetic_rain
from nowcast.models import FORECASTERS, Forecaster, import_all, load_forecaster
from nowcast.models.base import DoesNotFitError, bind_to_store
from nowcast.types import GridSpec, WindowSpec

import_all()
NAMES = FORECASTERS.names()
B, H, W, N_OUT, MEMBERS = 2, 32, 32, 3, 3


def _is_learned(name: str) -> bool:
    return hasattr(FORECASTERS.get(name), "tiny")


def _build(name: str) -> Forecaster:
    cls = FORECASTERS.get(name)
    return cls.tiny() if _is_learned(name) else load_forecaster(name)


@pytest.fixture(scope="module", params=NAMES)
def model(request) -> Forecaster:
    torch.manual_seed(0)
    return _build(request.param)


def _past(n_in: int) -> torch.Tensor:
    """(B, T, 32, 32) synthetic rain in mm/h with NaN outside the radar coverage."""
    t = max(4, n_in)
    return torch.from_numpy(np.stack([synthetic_rain(t, H, W, seed=s) for s in range(B)]))


def _run(model: Forecaster, past: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return model.forecast(past, N_OUT, members=MEMBERS, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def case(model) -> tuple[Forecaster, torch.Tensor, torch.Tensor]:
    """The model, its input and its forecast (seed 7), computed once per model."""
    past = _past(model.n_in)
    return model, past, _run(model, past, seed=7)


def test_registry_has_the_baselines():
    assert {"persistence", "extrapolation", "steps"} <= set(NAMES)


class TestForecasterContract:
    def test_shape_dtype_range(self, case):
        model, past, rain = case
        assert torch.isnan(past).any(), "the input should exercise NaN (no coverage) handling"
        m = 1 if model.deterministic else MEMBERS
        assert tuple(rain.shape) == (B, m, N_OUT, H, W)
        assert rain.dtype == torch.float32
        assert torch.isfinite(rain).all()
        assert (rain >= 0).all()
        assert rain.max() < 500.0, "rain rates beyond any physical value: a transform was not inverted"

    def test_describe_is_serialisable_provenance(self, model):
        info = model.describe()
        assert info["model"] == model.name
        json.dumps(info, default=str)

    def test_reproducible_under_a_seeded_generator(self, case):
        model, past, rain = case
        torch.testing.assert_close(_run(model, past, seed=7), rain, rtol=0, atol=0)

    def test_too_few_past_frames_is_a_clear_error(self, model):
        past = _past(model.n_in)[:, : model.n_in - 1]
        with pytest.raises(ValueError, match="past frames"):
            _run(model, past)

    def test_all_missing_input_gives_a_finite_forecast(self, model):
        past = torch.full((1, max(4, model.n_in), H, W), float("nan"))  # radar down everywhere
        rain = _run(model, past)
        assert torch.isfinite(rain).all() and (rain >= 0).all()
        if not _is_learned(model.name):
            assert (rain == 0).all(), "no observed rain must give a dry forecast"

    def test_a_given_motion_is_used_by_advecting_models_and_ignored_by_the_others(self, case):
        model, past, rain = case
        still = torch.zeros(B, 2, H, W)
        drift = torch.zeros(B, 2, H, W)
        drift[:, 0] = 3.0  # 3 px per step towards +x
        gen = torch.Generator
        with_still = model.forecast(past, N_OUT, MEMBERS, gen().manual_seed(7), motion=still)
        with_drift = model.forecast(past, N_OUT, MEMBERS, gen().manual_seed(7), motion=drift)
        assert with_drift.shape == rain.shape and torch.isfinite(with_drift).all()
        if model.uses_motion:
            assert not torch.equal(with_still, with_drift), "the given motion was not used"
        else:
            torch.testing.assert_close(with_drift, rain, rtol=0, atol=0)

    def test_motion_of_another_shape_or_not_finite_is_a_clear_error(self, model):
        past = _past(model.n_in)
        with pytest.raises(ValueError, match="motion must be"):
            model.forecast(past, N_OUT, motion=torch.zeros(B, 2, H, W + 1))
        with pytest.raises(ValueError, match="NaN"):
            model.forecast(past, N_OUT, motion=torch.full((B, 2, H, W), float("nan")))

    def test_mm_h_scale_preserved(self, case):
        model, past, rain = case
        if _is_learned(model.name):
            pytest.skip("an untrained tiny model has no scale to preserve")
        last = torch.nan_to_num(past[:, -1]).mean()
        first_lead = rain[:, :, 0].mean()
        assert 0.5 < float(first_lead / last) < 2.0


    def test_binds_to_its_data_and_refuses_another_time_step_if_learned(self, model):
        fresh = _build(model.name)  # binding may change a model: keep the shared one as built
        assert fresh.bind(WindowSpec(fresh.n_in, N_OUT, 5.0), GridSpec(2000.0, H, W)) is fresh
        store = {"timestep_minutes": 10.0, "pixel_size_m": 2000.0, "path": "ten.zarr"}
        if _is_learned(model.name):
            with pytest.raises(DoesNotFitError, match=f"{model.name} cannot run on ten.zarr: .*"
                                                      "built for a 5-min time step, data has a 10-min one"):
                bind_to_store(fresh, store, N_OUT)
        else:  # physical models work in pixels per step, or take the step from the store
            assert bind_to_store(fresh, store, N_OUT) is fresh
        with pytest.raises(DoesNotFitError, match="past frames"):
            bind_to_store(_build(model.name), store, N_OUT, n_in=model.n_in - 1)

    def test_an_unknown_argument_is_refused_before_building(self, model):
        with pytest.raises(ValueError, match=f"{model.name}: unknown argument 'bogus'"):
            type(model).check_arguments(bogus=1)


def test_steps_takes_pixel_size_and_time_step_from_the_store():
    steps = bind_to_store(load_forecaster("steps"), {"timestep_minutes": 10.0, "pixel_size_m": 1000.0}, N_OUT)
    assert (steps.kmperpixel, steps.timestep) == (1.0, 10.0)
    assert steps.describe()["kmperpixel"] == 1.0
    agreeing = load_forecaster("steps", kmperpixel=1.0)
    one_km = {"timestep_minutes": 5.0, "pixel_size_m": 1000.0}
    assert bind_to_store(agreeing, one_km, N_OUT).kmperpixel == 1.0
    with pytest.raises(DoesNotFitError, match="kmperpixel=2 was given but the data has 1 km pixels"):
        bind_to_store(load_forecaster("steps", kmperpixel=2.0), one_km, N_OUT)


def test_persistence_returns_the_last_field():
    past = _past(1)
    rain = load_forecaster("persistence").forecast(past, N_OUT)
    expected = torch.nan_to_num(past[:, -1])
    for t in range(N_OUT):
        torch.testing.assert_close(rain[:, 0, t], expected, rtol=0, atol=0)
