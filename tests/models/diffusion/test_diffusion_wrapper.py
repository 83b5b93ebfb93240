"""ConditionalDiffusion: conditioning, overfitting one batch, batched ensemble sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.motion import estimate_motion
from nowcast.data.synthetic import synthetic_motion, synthetic_rain
from nowcast.models.advection import advect
from nowcast.models.diffusion import ConditionalDiffusion, SpatioTemporalTransformer
from nowcast.models.diffusion.wrapper import motion_of

N_IN, N_OUT, SIZE = 4, 4, 32


def batch(b: int = 2) -> dict[str, torch.Tensor]:
    items = [np.nan_to_num(synthetic_rain(N_IN + N_OUT, SIZE, SIZE, seed=s)) for s in range(b)]
    rain = torch.from_numpy(np.stack(items))
    motion = torch.from_numpy(np.stack([synthetic_motion(SIZE, SIZE, seed=s) for s in range(b)]))
    mask = torch.ones(b, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, :3] = False
    return {"past": rain[:, :N_IN], "future": rain[:, N_IN:], "mask": mask, "motion": motion}


def model(**kw) -> ConditionalDiffusion:
    torch.manual_seed(0)
    net = SpatioTemporalTransformer(n_in=N_IN, n_out=N_OUT, extrapolation=kw.pop("extrapolation", True),
                                    dim=32, depth=1, heads=2, patch=4)
    return ConditionalDiffusion(net, **kw)


def test_prepare_conditions_on_extrapolation_and_residual():
    b = batch()
    d = model(residual=True)
    cond, base = d.prepare(b["past"], b["motion"])
    extrap = d.to_model(advect(b["past"][:, -1], b["motion"], N_OUT))
    assert cond.shape == (2, N_IN + N_OUT, SIZE, SIZE) and cond.min() >= -1 and cond.max() <= 1
    torch.testing.assert_close(cond[:, N_IN:], extrap)
    torch.testing.assert_close(base, extrap)
    cond, base = model(residual=False, extrapolation=False).prepare(b["past"], b["motion"])
    assert cond.shape == (2, N_IN, SIZE, SIZE) and base is None


def test_motion_estimated_per_element_with_pysteps_when_absent():
    b = batch(1)
    d = model()
    motion = motion_of(b["past"])
    for i in range(1):
        np.testing.assert_array_equal(motion[i].numpy(), estimate_motion(b["past"][i].numpy()))
    assert motion.abs().mean() > 0.3  # the synthetic rain drifts 1-2 px/step
    torch.testing.assert_close(d.prepare(b["past"])[0], d.prepare(b["past"], motion)[0])


def test_tiny_model_overfits_one_batch():
    torch.set_num_threads(1)
    b = batch()
    d = model(prediction_type="v")
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    g = torch.Generator()
    losses = []
    for _ in range(60):
        g.manual_seed(0)  # the same diffusion times and noise every step: one fixed batch
        loss = d.training_loss(b, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.4 * losses[0], losses[::10]


def test_sample_members_in_one_batched_pass_and_seeded():
    b = batch()
    d = model().eval()
    calls = []
    d.denoiser.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    kw = dict(members=3, sampler="ddim", n_steps=3, motion=b["motion"])
    out = d.sample(b["past"], 2, generator=torch.Generator().manual_seed(5), **kw)
    assert out.shape == (2, 3, 2, SIZE, SIZE) and torch.isfinite(out).all() and out.min() >= 0
    assert calls == [6, 6, 6]  # B * members per call, n_steps calls
    again = d.sample(b["past"], 2, generator=torch.Generator().manual_seed(5), **kw)
    torch.testing.assert_close(out, again)
    assert not torch.equal(out[:, 0], out[:, 1])  # members differ
    with pytest.raises(ValueError, match="up to 4 frames"):
        d.sample(b["past"], 5, **kw)


def test_min_snr_weighting_and_bad_options():
    b = batch(1)
    d = model(loss_weighting="min_snr", prediction_type="epsilon")
    assert torch.isfinite(d.training_loss(b, generator=torch.Generator().manual_seed(0)))
    # v_min_snr: the x0 error weighted by 1 + min(SNR, gamma), the same for every objective
    t = torch.tensor([50, 500, 990])
    d = {p: model(loss_weighting="v_min_snr", prediction_type=p) for p in ("x0", "epsilon", "v")}
    abar = d["x0"].schedule.alpha_bar(t, torch.zeros(3))
    snr = abar / (1 - abar)
    torch.testing.assert_close(d["x0"]._loss_weight(t, torch.zeros(3)), 1 + snr.clamp(max=5.0))
    torch.testing.assert_close(d["v"]._loss_weight(t, torch.zeros(3)) * (1 + snr), 1 + snr.clamp(max=5.0))
    torch.testing.assert_close(d["epsilon"]._loss_weight(t, torch.zeros(3)) * snr, 1 + snr.clamp(max=5.0))
    with pytest.raises(ValueError, match="prediction_type"):
        model(prediction_type="score")
    with pytest.raises(ValueError, match="loss_weighting"):
        model(loss_weighting="p2")
