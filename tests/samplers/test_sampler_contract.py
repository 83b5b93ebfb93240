"""One contract over every registered sampler, plus distributional checks on a Gaussian toy problem."""

from __future__ import annotations

import functools

import pytest
import torch
from gaussian import GaussianOracle

from nowcast.samplers import SAMPLERS, NoiseSchedule, sample, spaced_timesteps
from nowcast.samplers.adversarial import ADVERSARIAL_STEPS

SCHEDULE = NoiseSchedule.cosine(1000)
MU, S = 0.6, 0.25


def step_counts(name: str) -> tuple[int, ...]:
    return ADVERSARIAL_STEPS if name == "adversarial" else (1, 4, 10)


@pytest.mark.parametrize("name", SAMPLERS.names())
class TestSamplerContract:
    @pytest.mark.parametrize("ptype", ["v", "epsilon", "x0"])
    def test_shapes_step_count_no_nans(self, name: str, ptype: str) -> None:
        sampler = SAMPLERS.build(name, schedule=SCHEDULE, prediction_type=ptype)
        for n in step_counts(name):
            model = GaussianOracle(SCHEDULE, MU, S, prediction_type=ptype)
            x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(n))
            x0 = sample(model, sampler, x_T, n, generator=torch.Generator().manual_seed(1))
            assert model.n_calls == n and len(sampler.timesteps) == n
            assert x0.shape == x_T.shape and x0.dtype == x_T.dtype
            assert torch.isfinite(x0).all()

    def test_the_network_each_step_calls(self, name: str) -> None:
        """A sampler calls the denoiser, or its own network when it brings one (and refuses without)."""
        sampler = SAMPLERS.build(name, schedule=SCHEDULE)
        x, t, cond = torch.zeros(2, 3, 4, 4), torch.tensor([999, 999]), torch.zeros(2, 1, 4, 4)

        def denoiser(x_t, t_, c, g):
            return x_t + 1.0

        if not type(sampler).own_network:
            assert sampler.network(denoiser) is denoiser
            return
        with pytest.raises(ValueError, match="trained generator"):
            sampler.network(denoiser)

        class Generator(torch.nn.Module):
            z_dim = 5

            def forward(self, x_t, t_, c, z):
                return x_t + z.sum(dim=1)[:, None, None, None]

        own = SAMPLERS.build(name, schedule=SCHEDULE, generator=Generator()).network(denoiser)
        a = own(x, t, cond, torch.Generator().manual_seed(0))
        assert torch.equal(a, own(x, t, cond, torch.Generator().manual_seed(0)))  # z from the generator seed
        assert not torch.equal(a, denoiser(x, t, cond, None))

    def test_timesteps(self, name: str) -> None:
        sampler = SAMPLERS.build(name, schedule=SCHEDULE)
        for n in step_counts(name):
            sampler.set_timesteps(n)
            ts = sampler.timesteps
            assert ts.dtype == torch.long and len(ts) == n and int(ts[0]) == 999
            assert bool((ts[1:] < ts[:-1]).all()) and int(ts[-1]) >= 0
        with pytest.raises(ValueError):
            sampler.set_timesteps(0)
        with pytest.raises(ValueError, match="not one of"):
            sampler.step(torch.zeros(1), 123, torch.zeros(1))

    def test_deterministic_under_seed(self, name: str) -> None:
        sampler = SAMPLERS.build(name, schedule=SCHEDULE)
        n = step_counts(name)[-1]
        x_T = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(0))

        def run(seed: int) -> torch.Tensor:
            model = GaussianOracle(SCHEDULE, MU, S)
            return sample(model, sampler, x_T, n, torch.Generator().manual_seed(seed))

        a, b, c = run(7), run(7), run(8)
        assert torch.equal(a, b)
        assert torch.equal(a, c) != sampler.stochastic  # noise (only) where the sampler is stochastic

    def test_runs_on_float64_and_batch_of_one(self, name: str) -> None:
        sampler = SAMPLERS.build(name, schedule=SCHEDULE)
        x0 = sample(GaussianOracle(SCHEDULE, MU, S), sampler, torch.randn(1, 5, dtype=torch.float64), 2)
        assert x0.dtype == torch.float64 and x0.shape == (1, 5)


def test_spaced_timesteps() -> None:
    for spacing in ("linspace", "trailing"):
        assert torch.equal(spaced_timesteps(1000, 1000, spacing), torch.arange(999, -1, -1))
        assert spaced_timesteps(1000, 1, spacing).tolist() == [999]
    assert spaced_timesteps(1000, 4).tolist() == [999, 749, 499, 249]
    assert spaced_timesteps(1000, 4, "linspace").tolist() == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="spacing"):
        spaced_timesteps(1000, 4, "leading")


def test_unknown_sampler_lists_known() -> None:
    with pytest.raises(KeyError, match="ddim"):
        SAMPLERS.get("euler")


def test_adversarial_refuses_too_many_steps() -> None:
    with pytest.raises(ValueError, match="large steps"):
        SAMPLERS.build("adversarial", schedule=SCHEDULE).set_timesteps(50)


# --- distributional checks on the Gaussian toy problem --------------------------------------
N, MU_D, S_D = 10_000, 0.6, 0.5


def gaussian_samples(
    name: str, n_steps: int, sample_x0: bool = False, eta: float | None = None, seed: int = 123
) -> torch.Tensor:
    """N draws of the toy data N(MU_D, S_D^2) through ``name`` with the ideal model (float64)."""
    return _gaussian_samples(name, n_steps, sample_x0, eta, seed)


@functools.cache
def _gaussian_samples(name: str, n_steps: int, sample_x0: bool, eta: float | None, seed: int) -> torch.Tensor:
    kw = {} if eta is None else {"eta": eta}
    sampler = SAMPLERS.build(name, schedule=SCHEDULE, **kw)
    g = torch.Generator().manual_seed(seed)
    z_gen = torch.Generator().manual_seed(4)
    model = GaussianOracle(SCHEDULE, MU_D, S_D, sample_x0=sample_x0, generator=z_gen)
    x_T = torch.randn(N, 1, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 1000 steps of tiny element-wise ops: threading only adds overhead
    try:
        return sample(model, sampler, x_T, n_steps, generator=g).flatten()
    finally:
        torch.set_num_threads(threads)


def std_error(x: torch.Tensor) -> float:
    return abs(float(x.std()) / S_D - 1)


def assert_matches_data(x: torch.Tensor, std_rtol: float = 0.03) -> None:
    se = S_D / N**0.5  # standard error of the mean; that of the std is about 0.7 % here
    assert abs(float(x.mean()) - MU_D) < 5 * se, float(x.mean())
    assert std_error(x) < std_rtol, float(x.std())


@pytest.mark.parametrize(("name", "n_steps", "eta", "std_rtol"), [
    ("ddpm", 1000, None, 0.03),
    ("ddim", 1000, 1.0, 0.03),
    ("ddim", 100, 0.0, 0.03),
    ("dpmpp_2m", 20, None, 0.03),
    ("dpmpp_2m", 10, None, 0.07),  # measured 5 % low: the final x0 jump from t=99
])
def test_recovers_gaussian_data(name: str, n_steps: int, eta: float | None, std_rtol: float) -> None:
    assert_matches_data(gaussian_samples(name, n_steps, eta=eta), std_rtol)


def test_ode_solvers_converge_in_step_count() -> None:
    """DDIM is first order, DPM-Solver++(2M) second: at equal steps the latter is closer."""
    ddim = [std_error(gaussian_samples("ddim", n, eta=0.0)) for n in (10, 20)]
    dpm = [std_error(gaussian_samples("dpmpp_2m", n)) for n in (10, 20)]
    assert ddim[1] < ddim[0] and dpm[1] < dpm[0]
    assert dpm[0] < ddim[0] and dpm[1] < ddim[1]


def test_ddim_eta1_matches_ddpm_in_distribution() -> None:
    ddpm = gaussian_samples("ddpm", 1000)
    ddim = gaussian_samples("ddim", 1000, eta=1.0, seed=321)
    # independent noise: a two-sample comparison of mean and std (std error ~0.7 % each)
    assert abs(float(ddpm.mean() - ddim.mean())) < 5 * S_D * (2 / N) ** 0.5
    assert abs(float(ddpm.std() / ddim.std()) - 1) < 0.04


def test_ddim_eta1_is_the_ddpm_posterior_step() -> None:
    """With the same noise, DDIM(eta=1) and the posterior step coincide (Song et al., eq. 16)."""
    ddpm = gaussian_samples("ddpm", 1000)
    ddim = gaussian_samples("ddim", 1000, eta=1.0)
    assert torch.allclose(ddpm, ddim, atol=1e-8)
    assert not torch.allclose(ddpm, gaussian_samples("ddim", 1000, eta=1.0, seed=321))


@pytest.mark.parametrize("n_steps", ADVERSARIAL_STEPS)
def test_adversarial_with_perfect_generator_reproduces_data(n_steps: int) -> None:
    """A generator that samples p(x0 | x_t) exactly gives the data distribution in 1, 2 or 4 steps."""
    assert_matches_data(gaussian_samples("adversarial", n_steps, sample_x0=True))


@pytest.mark.parametrize("n_steps", ADVERSARIAL_STEPS)
def test_adversarial_with_oracle_x0_returns_it(n_steps: int) -> None:
    x_data = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = SAMPLERS.build("adversarial", schedule=SCHEDULE, prediction_type="x0")
    out = sample(lambda x, t: x_data, sampler, torch.randn_like(x_data), n_steps)
    assert torch.allclose(out, x_data)


def test_mean_predictor_with_one_ancestral_step_collapses() -> None:
    """Why DDGAN needs a generator: one posterior step with the *mean* x0 predictor has
    almost no spread; the sampling generator above fixes exactly that."""
    assert float(gaussian_samples("ddpm", 1).std()) < 0.1 * S_D
