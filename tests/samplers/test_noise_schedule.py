from __future__ import annotations

import math

import pytest
import torch

from nowcast.samplers import NoiseSchedule


@pytest.fixture(params=["cosine", "linear"])
def schedule(request) -> NoiseSchedule:
    return getattr(NoiseSchedule, request.param)(1000)


def test_cosine_matches_nichol_dhariwal() -> None:
    sch = NoiseSchedule.cosine(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert float(sch.alphas_cumprod[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert sch.betas.dtype == torch.float64 and float(sch.betas.max()) <= 0.999


def test_linear_betas() -> None:
    sch = NoiseSchedule.linear(100, 1e-4, 2e-2)
    assert sch.n_train_steps == 100
    assert float(sch.betas[0]) == pytest.approx(1e-4) and float(sch.betas[-1]) == pytest.approx(2e-2)
    assert float(sch.alphas_cumprod[1]) == pytest.approx((1 - 1e-4) * (1 - float(sch.betas[1])))


@pytest.mark.parametrize("ptype", ["epsilon", "v", "x0"])
def test_parametrisations_round_trip(schedule: NoiseSchedule, ptype: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 200, 600, 950])
    x_t = schedule.q_sample(x0, t, eps)
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    out = {"epsilon": eps, "v": schedule.v_target(x0, eps, t), "x0": x0}[ptype]
    assert torch.allclose(schedule.to_x0(out, x_t, t, ptype), x0, atol=1e-6)
    assert torch.allclose(schedule.to_eps(out, x_t, t, ptype), eps, atol=1e-6)


def test_posterior_one_step_is_ddpm(schedule: NoiseSchedule) -> None:
    """s = t-1: Ho et al. eq. 7 (beta-tilde and the two mean coefficients)."""
    x0, x_t = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([1, 400, 999])
    ab, b = schedule.alphas_cumprod, schedule.betas
    ab_t, ab_s, b_t = (v.reshape(-1, 1) for v in (ab[t], ab[t - 1], b[t]))
    mean, var = schedule.posterior(x0, x_t, t, t - 1)
    ref_mean = ab_s.sqrt() * b_t / (1 - ab_t) * x0 + (1 - b_t).sqrt() * (1 - ab_s) / (1 - ab_t) * x_t
    assert torch.allclose(mean, ref_mean)
    assert torch.allclose(var, ((1 - ab_s) / (1 - ab_t) * b_t).expand_as(var))


def test_posterior_large_jump_is_gaussian_conditioning(schedule: NoiseSchedule) -> None:
    """Any s < t: condition the joint Gaussian of (x_s, x_t) given x0 directly."""
    x0, x_t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t, s = torch.tensor([999, 999, 500, 300]), torch.tensor([0, 499, 10, -1])
    ab = schedule.alphas_cumprod
    ab_t = ab[t].reshape(-1, 1)
    ab_s = torch.where(s < 0, torch.ones_like(ab_t[:, 0]), ab[s.clamp(min=0)]).reshape(-1, 1)
    cov = (ab_t / ab_s).sqrt() * (1 - ab_s)  # Cov(x_s, x_t | x0)
    ref_mean = ab_s.sqrt() * x0 + cov / (1 - ab_t) * (x_t - ab_t.sqrt() * x0)
    ref_var = (1 - ab_s) - cov**2 / (1 - ab_t)
    mean, var = schedule.posterior(x0, x_t, t, s)
    assert torch.allclose(mean, ref_mean) and torch.allclose(var, ref_var.expand_as(var), atol=1e-12)
    # s = -1: the clean data itself
    assert torch.allclose(mean[3], x0[3], rtol=1e-14, atol=0) and bool((var[3] == 0).all())


def test_float32_inputs_keep_dtype_and_bad_input_raises(schedule: NoiseSchedule) -> None:
    x = torch.randn(2, 3)
    assert schedule.q_sample(x, torch.tensor([1, 2]), x).dtype == torch.float32
    with pytest.raises(ValueError, match="out of range"):
        schedule.q_sample(x, torch.tensor([0, 1000]), x)
    with pytest.raises(ValueError, match="prediction_type"):
        schedule.to_x0(x, x, torch.tensor([1, 2]), "score")
    with pytest.raises(ValueError, match="s < t"):
        schedule.posterior(x, x, torch.tensor([5, 5]), torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(torch.tensor([0.5, 1.5]))


def test_q_step_composes_to_q_sample(schedule: NoiseSchedule) -> None:
    """x_s ~ q(x_s|x0) then x_t ~ q(x_t|x_s) has the moments of q(x_t|x0)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((50_000,), 0.7, dtype=torch.float64)
    s, t = 200, 700
    x_s = schedule.q_sample(x0, s, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    x_t = schedule.q_step(x_s, s, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    ab = float(schedule.alphas_cumprod[t])
    assert abs(float(x_t.mean()) - ab**0.5 * 0.7) < 0.02
    assert abs(float(x_t.std()) - (1 - ab) ** 0.5) < 0.02
    assert torch.equal(schedule.q_step(x0, -1, t, x0), schedule.q_sample(x0, t, x0))
