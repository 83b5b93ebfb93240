"""SpatioTemporalTransformer: shapes, sizes, zero-init, attention over space and time, latent z."""

from __future__ import annotations

import pytest
import torch

from nowcast.models.diffusion.denoiser import SpatioTemporalTransformer


def make(**kw) -> SpatioTemporalTransformer:
    torch.manual_seed(0)
    args = {"n_in": 3, "n_out": 4, "dim": 32, "depth": 2, "heads": 2, "patch": 4, **kw}
    net = SpatioTemporalTransformer(**args)
    # leave the zero-initialised output and gates of adaLN-zero so that inputs reach the output
    for p in net.parameters():
        if p.abs().sum() == 0 and p.ndim > 1:
            torch.nn.init.normal_(p, std=0.05)
    return net


def inputs(b=2, h=16, w=24, n_cond=7):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 4, h, w, generator=g), torch.tensor([10, 900][:b]),
            torch.randn(b, n_cond, h, w, generator=g))


def test_zero_init_output_and_any_frame_size():
    net = SpatioTemporalTransformer(n_in=3, n_out=4, dim=32, depth=1, heads=2, patch=4)
    for h, w in [(16, 24), (32, 32)]:
        x, t, c = inputs(h=h, w=w)
        out = net(x, t, c)
        assert out.shape == x.shape and torch.count_nonzero(out) == 0


def test_rejects_bad_shapes():
    net = make()
    x, t, c = inputs()
    with pytest.raises(ValueError, match="patch size"):
        net(x[..., :18], t, c[..., :18])
    with pytest.raises(ValueError, match="cond"):
        net(x, t, c[:, :3])
    with pytest.raises(ValueError, match="z_dim=0"):
        net(x, t, c, z=torch.randn(2, 8))


def test_future_attends_to_past_in_time_and_to_far_patches_in_space():
    net = make().eval()
    x, t, c = inputs()
    base = net(x, t, c)
    c2 = c.clone()
    c2[:, 0, :4, :4] += 1.0  # oldest past frame, top-left patch only
    diff = (net(x, t, c2) - base).abs()
    assert diff[:, :, :4, :4].sum() > 0  # temporal attention: same patch, other frame
    assert diff[:, :, 8:, 12:].sum() > 0  # then spatial attention: other patches
    assert not torch.equal(net(x, torch.tensor([500, 3]), c), base)  # diffusion time matters


def test_without_extrapolation_takes_only_the_past():
    net = make(extrapolation=False)
    x, t, c = inputs(n_cond=3)
    assert net(x, t, c).shape == x.shape and net.cond_channels == 3


def test_latent_enters_through_zero_initialised_projection():
    torch.manual_seed(0)
    plain = make()
    with_z = SpatioTemporalTransformer(n_in=3, n_out=4, dim=32, depth=2, heads=2, patch=4, z_dim=8)
    missing, unexpected = with_z.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"z_proj.weight", "z_proj.bias"} and not unexpected
    x, t, c = inputs()
    z = torch.randn(2, 8)
    torch.testing.assert_close(with_z(x, t, c, z), plain(x, t, c))  # starts as the plain denoiser
    torch.nn.init.normal_(with_z.z_proj.weight)
    assert not torch.allclose(with_z(x, t, c, z), with_z(x, t, c, -z))
