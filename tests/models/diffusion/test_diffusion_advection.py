"""advect() against pysteps' semi-Lagrangian extrapolation (the independent reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pysteps.extrapolation import semilagrangian

from nowcast.data.synthetic import synthetic_motion, synthetic_rain
from nowcast.models.advection import advect


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    rain = np.nan_to_num(synthetic_rain(4, 48, 56, seed=3)[-1]).astype(np.float64)
    # a drift of ~2-3 px/step plus a rotation: trajectories curve and leave the frame
    motion = 1.5 * synthetic_motion(48, 56, seed=3).astype(np.float64)
    return rain, motion


def test_matches_pysteps_semilagrangian(case):
    rain, motion = case
    ref = semilagrangian.extrapolate(rain, motion, 12, outval=0.0)
    out = advect(torch.from_numpy(rain)[None], torch.from_numpy(motion)[None], 12)[0].numpy()
    assert out.shape == ref.shape == (12, 48, 56)
    assert ref.max() > 5 and (ref == 0).mean() > 0.1  # rain, and rain advected in from outside
    # same scheme (midpoint back-trajectories, bilinear, 0 outside): equal to rounding in float64
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)
    # in float32 the trajectories drift by rounding only: 1e-4 of the field's maximum
    out32 = advect(torch.from_numpy(rain).float()[None], torch.from_numpy(motion).float()[None], 12)
    np.testing.assert_allclose(out32[0].numpy(), ref, rtol=0, atol=1e-4 * ref.max())


def test_integer_translation_is_a_shift():
    field = torch.rand(2, 16, 20, dtype=torch.float64)
    motion = torch.zeros(2, 2, 16, 20, dtype=torch.float64)
    motion[:, 0], motion[:, 1] = 1.0, -2.0  # one column right, two rows up per step
    out = advect(field, motion, 3)
    for k in range(3):
        s = k + 1
        expected = torch.zeros_like(field)
        expected[:, : 16 - 2 * s, s:] = field[:, 2 * s:, : 20 - s]
        torch.testing.assert_close(out[:, k], expected)


def test_differentiable_and_checks_shapes():
    field = torch.rand(1, 8, 8, requires_grad=True)
    motion = torch.full((1, 2, 8, 8), 0.3, requires_grad=True)
    advect(field, motion, 2).sum().backward()
    assert field.grad is not None and motion.grad is not None and motion.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="motion"):
        advect(field.detach(), torch.zeros(1, 3, 8, 8), 2)
    with pytest.raises(ValueError, match="n_steps"):
        advect(field.detach(), motion.detach(), 0)
