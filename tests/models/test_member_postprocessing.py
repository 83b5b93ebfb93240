"""Probability matching to the last observation and BPS motion perturbations of ensemble members."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.models.matching import match_to_observation
from nowcast.models.perturbation import bps_displacements, displace


def test_matching_keeps_each_members_pattern_and_takes_the_observed_values():
    g = torch.Generator().manual_seed(0)
    members = torch.rand(2, 3, 4, 16, 16, generator=g) * 5
    wet = torch.rand(2, 16, 16, generator=g) >= 0.6
    observed = torch.where(wet, torch.rand(2, 16, 16, generator=g) * 9, 0.0)
    out = match_to_observation(members, observed)
    for b in range(2):
        values = observed[b].flatten().sort().values
        for j in range(3):
            for k in range(4):
                got = out[b, j, k].flatten()
                assert torch.equal(got.sort().values, values)  # exactly the observed distribution
                # the member's rank order is kept: a wetter member pixel is never drier after matching
                order = members[b, j, k].flatten().argsort()
                assert bool((got[order].diff() >= 0).all())


def test_matching_breaks_ties_among_dry_pixels_with_the_second_field():
    members = torch.zeros(1, 1, 1, 1, 4)
    observed = torch.tensor([[[0.0, 0.0, 2.0, 5.0]]])
    tie_break = torch.tensor([[[[3.0, 0.0, 0.0, 1.0]]]])  # where the extrapolation has rain
    out = match_to_observation(members, observed, tie_break)
    assert out.flatten().tolist() == [5.0, 0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="observed"):
        match_to_observation(members, observed[..., :3])


def test_displace_by_whole_pixels_is_a_shift_with_zero_inflow():
    field = torch.arange(1.0, 26.0).reshape(1, 1, 1, 5, 5)
    shift = torch.zeros(1, 1, 1, 2, 5, 5)
    shift[:, :, :, 0] = 2.0  # +2 px in x: pixel x reads x - 2
    shift[:, :, :, 1] = -1.0  # -1 px in y: pixel y reads y + 1
    out = displace(field, shift)[0, 0, 0]
    expected = torch.zeros(5, 5)
    expected[:4, 2:] = field[0, 0, 0, 1:, :3]
    assert torch.allclose(out, expected)


def test_bps_displacements_follow_pysteps_and_grow_with_lead_time():
    from pysteps.noise.motion import generate_bps, initialize_bps

    motion = torch.zeros(1, 2, 8, 8)
    motion[:, 0] = 1.5  # 1.5 px per step towards +x
    gen = torch.Generator().manual_seed(3)
    d = bps_displacements(motion, members=64, n_out=12, pixel_size_km=2.0, timestep_minutes=5.0,
                          generator=gen)
    assert d.shape == (1, 64, 12, 2, 8, 8)
    assert torch.allclose(d, d[..., :1, :1])  # uniform motion: one displacement per member and lead
    size = d[0, :, :, :, 0, 0].norm(dim=-1).mean(dim=0)  # mean over members, per lead
    assert bool((size.diff() > 0).all())
    # member 0, by hand with pysteps: the velocity errors of steps 1..k, summed
    seed = torch.randint(0, 2**31 - 1, (1, 64), generator=torch.Generator().manual_seed(3))[0, 0].item()
    pert = initialize_bps(motion[0].double().numpy(), 0.5, 5.0, randstate=np.random.RandomState(seed))
    by_hand = np.cumsum([generate_bps(pert, 5.0 * (k + 1))[:, 0, 0] for k in range(12)], axis=0)
    np.testing.assert_allclose(d[0, 0, :, :, 0, 0].numpy(), by_hand, rtol=1e-5)
    # no motion, no direction to perturb along: pysteps leaves such pixels alone
    assert not bps_displacements(torch.zeros(1, 2, 4, 4), 2, 3, 2.0, 5.0).any()
