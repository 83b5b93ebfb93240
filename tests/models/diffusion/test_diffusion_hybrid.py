"""SpaceTimeUNet and the coarse, scaled residual: shapes, zero-init safety, reach in space and time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.synthetic import synthetic_motion, synthetic_rain
from nowcast.models.advection import advect
from nowcast.models.diffusion import ConditionalDiffusion
from nowcast.models.diffusion.hybrid import SpaceTimeUNet
from nowcast.models.diffusion.networks import build_denoiser
from nowcast.models.diffusion.settings import DiffusionNetwork

N_IN, N_OUT = 3, 4


def make(init_zeros: bool = True, **kw) -> SpaceTimeUNet:
    torch.manual_seed(0)
    net = SpaceTimeUNet(**{"n_in": N_IN, "n_out": N_OUT, "channels": (8, 16), "dim": 32, "depth": 1,
                           "heads": 2, **kw})
    if init_zeros:  # give the zero-initialised layers weights so that inputs reach the output
        for p in net.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                torch.nn.init.normal_(p, std=0.05)
    return net


def inputs(b: int = 2, h: int = 16, w: int = 24, n_cond: int = N_IN + N_OUT):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, N_OUT, h, w, generator=g), torch.tensor([10, 900][:b]),
            torch.randn(b, n_cond, h, w, generator=g))


def test_untrained_outputs_zero_on_any_multiple_of_its_size():
    net = make(init_zeros=False)
    assert net.size_multiple == 2
    for h, w in [(16, 24), (8, 8)]:
        x, t, c = inputs(h=h, w=w)
        out = net(x, t, c)
        assert out.shape == x.shape and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match="multiple of 2"):
        net(*inputs(h=15))
    with pytest.raises(ValueError, match="cond"):
        net(x, t, c[:, :2])


def test_folded_network_works_at_full_resolution_on_a_coarse_grid():
    """fold=4: pixels in, pixels out (not block means), an untrained output of 0, 4x the multiple."""
    net = make(init_zeros=False, fold=4)
    assert net.size_multiple == 8
    x, t, c = inputs(h=16, w=24)
    out = net(x, t, c)
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match="multiple of 8"):
        net(*inputs(h=12))
    with pytest.raises(ValueError, match="fold"):
        make(fold=0)
    with pytest.raises(ValueError, match="'hybrid' architecture only"):
        DiffusionNetwork(architecture="transformer", fold=4).denoiser_hparams(N_IN, N_OUT)
    assert DiffusionNetwork(architecture="hybrid", fold=4).denoiser_hparams(N_IN, N_OUT)["fold"] == 4

    trained = make(fold=4).eval()  # weights everywhere
    out = trained(x, t, c)
    blocks = out.reshape(2, N_OUT, 4, 4, 6, 4).std(dim=(3, 5))  # spread inside each 4x4 block
    assert (blocks > 0).all()  # full-resolution detail, not one value per block
    c2 = c.clone()
    c2[:, 0, 5, 5] += 1.0  # one past pixel
    assert not torch.equal(trained(x, t, c2), out)


def test_future_sees_far_past_and_diffusion_time():
    net = make().eval()
    x, t, c = inputs(h=32, w=32)
    base = net(x, t, c)
    c2 = c.clone()
    c2[:, 0, :2, :2] += 1.0  # the oldest past frame, one corner only
    diff = (net(x, t, c2) - base).abs()
    assert diff[:, :, :4, :4].sum() > 0  # across time, at the same place
    assert diff[:, :, 24:, 24:].sum() > 0  # and across the frame, through attention on the coarse grid
    assert not torch.equal(net(x, torch.tensor([500, 3]), c), base)


def test_latent_starts_as_the_plain_denoiser():
    plain = make()
    with_z = build_denoiser({"architecture": "hybrid", "n_in": N_IN, "n_out": N_OUT, "channels": (8, 16),
                             "dim": 32, "depth": 1, "heads": 2, "z_dim": 8})
    missing, unexpected = with_z.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"z_proj.weight", "z_proj.bias"} and not unexpected
    x, t, c = inputs()
    torch.testing.assert_close(with_z(x, t, c, torch.randn(2, 8)), plain(x, t, c))
    with pytest.raises(ValueError, match="unknown denoiser architecture"):
        build_denoiser({"architecture": "mlp"})


def rain_batch(size: int = 32) -> dict[str, torch.Tensor]:
    rain = torch.from_numpy(np.stack([np.nan_to_num(synthetic_rain(N_IN + N_OUT, size, size, seed=s))
                                      for s in range(2)]))
    motion = torch.from_numpy(np.stack([synthetic_motion(size, size, seed=s) for s in range(2)]))
    return {"past": rain[:, :N_IN], "future": rain[:, N_IN:], "motion": motion,
            "mask": torch.ones(2, size, size, dtype=torch.bool)}


def coarse_model(net: SpaceTimeUNet | None = None, **kw) -> ConditionalDiffusion:
    return ConditionalDiffusion(net or make(init_zeros=False), prediction_type="x0", coarsen=4,
                                residual_scale=0.25, **kw)


def test_coarse_residual_round_trip_and_shapes():
    b = rain_batch()
    d = coarse_model()
    cond, base = d.prepare(b["past"], b["motion"])
    assert cond.shape == (2, N_IN + N_OUT, 8, 8) and base.shape == (2, N_OUT, 32, 32)
    x0 = d.to_model(b["future"])
    r = d.to_diffused(x0, base)
    torch.testing.assert_close(r, torch.nn.functional.avg_pool2d(x0 - base, 4) / 0.25)
    torch.testing.assert_close(d.from_diffused(torch.full_like(r, 0.5), base), base + 0.125)
    assert d.size_multiple == 8
    with pytest.raises(ValueError, match="needs residual"):
        ConditionalDiffusion(make(), coarsen=2, residual=False)


def folded_model(net: SpaceTimeUNet | None = None) -> ConditionalDiffusion:
    """The full-resolution residual, 4x4 pixel blocks folded into channels (the "folded" variant)."""
    return ConditionalDiffusion(net or make(init_zeros=False, fold=4), prediction_type="x0", coarsen=1,
                                residual_scale=0.25)


@pytest.mark.parametrize("build", [coarse_model, folded_model], ids=["coarse", "folded"])
def test_untrained_model_forecasts_the_extrapolation_exactly(build):
    """The safety property by construction: zero output = zero residual = the extrapolation."""
    b = rain_batch()
    d = build()
    rain = d.sample(b["past"], N_OUT, members=3, sampler="ddim", n_steps=3,
                    generator=torch.Generator().manual_seed(0), motion=b["motion"])
    extrap = d.to_rain(d.to_model(advect(b["past"][:, -1], b["motion"], N_OUT)).clamp(-1, 1))
    torch.testing.assert_close(rain, extrap[:, None].expand_as(rain))


@pytest.mark.parametrize("fold", [1, 4])
def test_coarse_and_folded_models_learn_one_batch(fold):
    torch.manual_seed(0)
    b = rain_batch()
    net = make(init_zeros=False, channels=(16, 32), dim=32, fold=fold)
    d = coarse_model(net) if fold == 1 else folded_model(net)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = d.training_loss(b, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


@pytest.mark.realdata
def test_untrained_recipe_stays_on_the_extrapolation_of_a_real_event(shared_radar):
    """The safety property on MeteoSwiss 2016-07-11: the shipped recipe's network, untrained,
    forecasts +5 min as pysteps' extrapolation does (same motion), not noise."""
    import yaml

    from data_pipelines.importers import read_frame
    from data_pipelines.sources import get_source
    from nowcast.evaluation.categorical import CategoricalScores
    from nowcast.models import load_forecaster
    from nowcast.models.cards import shipped_cards
    from nowcast.models.diffusion.wrapper import motion_of
    from nowcast.training.diffusion_task import DiffusionTask
    from nowcast.types import repo_root

    files = sorted((shared_radar / "pysteps/mch/20160711").iterdir())[20:24]
    frames = np.stack([read_frame(f, get_source("mch"), coarsen=2).rain for f in files])
    y0, x0 = 96, 112  # a 128 px (256 km) box of the convective line
    past = torch.from_numpy(np.nan_to_num(frames[:, y0:y0 + 128, x0:x0 + 128]))[None].float()
    assert (past[0, -1] >= 1.0).float().mean() > 0.02  # the box holds rain
    motion = motion_of(past)

    recipe = yaml.safe_load((repo_root() / "configs/train/diffusion.yaml").read_text())["model"]["init_args"]
    torch.manual_seed(0)
    model = DiffusionTask(**{**recipe, "val_steps": 2}).to_forecaster()
    ours = model.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(0), motion=motion)
    extrap = load_forecaster("extrapolation").forecast(past, 3, members=1, motion=motion)

    scores = CategoricalScores(n_lead=1, thresholds=(1.0,))
    for m in range(2):
        scores.update(ours[:, m, :1], extrap[:, 0, :1], torch.ones(1, 128, 128, dtype=torch.bool))
    assert float(scores.compute()["csi"].reshape(-1)[0]) > 0.95
    assert (ours[:, :, 0] - extrap[:, :, 0]).abs().mean() < 0.05 * extrap[:, 0, 0].mean()

    # the same with the member post-processing the shipped model forecasts with (its card's settings)
    options = shipped_cards()["diffusion.pt"].forecast_args
    post = {k: v for k, v in options.items() if k not in ("sampler", "steps")}
    assert post  # matching and motion perturbations
    processed = DiffusionTask(**{**recipe, "val_steps": 2}).to_forecaster(**post)
    ours = processed.forecast(past, 3, members=2, generator=torch.Generator().manual_seed(0), motion=motion)
    scores = CategoricalScores(n_lead=1, thresholds=(1.0,))
    for m in range(2):
        scores.update(ours[:, m, :1], extrap[:, 0, :1], torch.ones(1, 128, 128, dtype=torch.bool))
    assert float(scores.compute()["csi"].reshape(-1)[0]) > 0.9


def test_lagrangian_past_aligns_translated_rain_on_the_last_frame():
    """Rain moving one pixel per step without change: aligned along the motion, every past frame
    is the last one (growth zero), where the frames as observed are shifted copies."""
    g = torch.Generator().manual_seed(3)
    field = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40, generator=g) * 8, 3, 1, 1)[0]
    past = torch.stack([torch.roll(field, (0, i), dims=(-2, -1)) for i in range(N_IN)], dim=1)
    motion = torch.zeros(1, 2, 40, 40)
    motion[:, 0] = 1.0  # +x, one pixel per step
    aligned = ConditionalDiffusion.aligned_past(past, motion)
    inner = (slice(None), slice(None), slice(None), slice(N_IN, None))  # rain from inside the frame
    torch.testing.assert_close(aligned[inner], past[:, -1:].expand_as(past)[inner])
    assert not torch.allclose(past[inner], past[:, -1:].expand_as(past)[inner])
    d = coarse_model(lagrangian_past=True)
    cond, _ = d.prepare(past, motion)
    torch.testing.assert_close(cond[:, :N_IN], torch.nn.functional.avg_pool2d(d.to_model(aligned), 4))
    eulerian, _ = coarse_model().prepare(past, motion)
    torch.testing.assert_close(cond[:, N_IN:], eulerian[:, N_IN:])  # the extrapolation is unchanged


def test_lagrangian_past_is_stored_with_the_network_and_absent_when_off():
    on = DiffusionNetwork(architecture="hybrid", lagrangian_past=True).wrapper_hparams()
    assert on["lagrangian_past"] is True
    assert "lagrangian_past" not in DiffusionNetwork(architecture="hybrid").wrapper_hparams()
