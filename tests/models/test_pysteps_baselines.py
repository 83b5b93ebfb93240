"""Extrapolation and STEPS against closed-form references: a translated field must land where
the known motion puts it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from nowcast.models import load_forecaster
from nowcast.models.baselines.steps import default_cascade_levels

H = W = 64
U, V = 2.0, 1.0  # px per step (+x columns, +y rows)


def _blob(cx: float, cy: float, sigma: float = 4.0, peak: float = 20.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return peak * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def _moving_blob(t: np.ndarray | range) -> np.ndarray:
    return np.stack([_blob(20 + U * k, 24 + V * k) for k in t])


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.tensor(frames[None], dtype=torch.float32)


def test_extrapolation_moves_a_blob_by_the_known_vector():
    out = load_forecaster("extrapolation").forecast(_tensor(_moving_blob(range(4))), 3)[0, 0].numpy()
    for k in range(3):
        expected = _blob(20 + U * (4 + k), 24 + V * (4 + k))  # closed form: lead k+1 after frame 3
        np.testing.assert_allclose(ndimage.center_of_mass(out[k]), ndimage.center_of_mass(expected), atol=0.1)
        assert np.abs(out[k] - expected).max() < 0.02 * expected.max()


def test_extrapolation_along_a_given_motion_lands_where_that_motion_puts_it():
    """A still blob advected along a handed-in (U, V) field (e.g. from a motion cache) moves by it."""
    still = np.stack([_blob(20, 24)] * 4)
    motion = torch.tensor([U, V], dtype=torch.float32)[None, :, None, None].expand(1, 2, H, W)
    out = load_forecaster("extrapolation").forecast(_tensor(still), 3, motion=motion)[0, 0].numpy()
    for k in range(3):
        expected = _blob(20 + U * (k + 1), 24 + V * (k + 1))
        np.testing.assert_allclose(ndimage.center_of_mass(out[k]), ndimage.center_of_mass(expected), atol=0.1)


def test_extrapolation_of_a_translated_texture_matches_the_shifted_field():
    rng = np.random.default_rng(1)
    big = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 4)
    big = np.where(big > 0, 30 * big / big.std(), 0.0)

    def window(t: int) -> np.ndarray:  # the scene moved by (U, V) px per step
        r, c = 20 + int(V * t), 20 + int(U * t)
        return big[r:r + H, c:c + W]

    out = load_forecaster("extrapolation").forecast(_tensor(np.stack([window(t) for t in range(4)])), 3)[0, 0]
    for k in range(3):
        m = 8 + 2 * k  # leave out the border that rain enters from outside the frame
        got, want = out[k].numpy()[m:-m, m:-m], window(4 + k)[m:-m, m:-m]
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99
        assert np.abs(got - want).mean() < 0.03 * want.mean()


def test_extrapolation_batch_elements_are_independent():
    a, b = _moving_blob(range(4)), _moving_blob(range(4))[:, ::-1].copy()
    f = load_forecaster("extrapolation")
    both = f.forecast(torch.tensor(np.stack([a, b]), dtype=torch.float32), 2)
    torch.testing.assert_close(both[1:], f.forecast(_tensor(b), 2))


@pytest.fixture(scope="module")
def steps_run():
    past = _tensor(_moving_blob(range(4)))
    f = load_forecaster("steps")
    ens = f.forecast(past, 3, members=4, generator=torch.Generator().manual_seed(0))
    return f, past, ens


def test_steps_members_differ_and_mean_follows_the_motion(steps_run):
    _, past, ens = steps_run
    ens = ens[0].numpy()  # (M, T, H, W)
    assert not np.allclose(ens[0], ens[1]), "STEPS members must differ"
    extrap = load_forecaster("extrapolation").forecast(past, 3)[0, 0].numpy()
    for k in range(3):
        mean_com = np.array(ndimage.center_of_mass(ens[:, k].mean(0)))
        assert np.hypot(*(mean_com - ndimage.center_of_mass(extrap[k]))) < 2.0
    # the rain amount stays of the observed order (mm/h back-transform, no dB leak)
    assert 0.3 < ens[:, 0].sum(axis=(-2, -1)).mean() / past[0, -1].sum().item() < 3.0


def test_steps_seed_controls_the_ensemble(steps_run):
    f, past, ens = steps_run
    again = f.forecast(past, 3, members=4, generator=torch.Generator().manual_seed(0))
    other = f.forecast(past, 3, members=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, ens, rtol=0, atol=0)
    assert not torch.allclose(other, ens)


def test_steps_runs_on_a_tiny_crop():
    small = _moving_blob(range(4))[:, 16:32, 12:28].copy()
    rain = load_forecaster("steps").forecast(_tensor(small), 2, members=2)
    assert rain.shape == (1, 2, 2, 16, 16) and rain.sum() > 0


def test_steps_dry_input_gives_a_dry_ensemble():
    rain = load_forecaster("steps").forecast(torch.zeros(1, 4, 32, 32), 2, members=3)
    assert rain.shape == (1, 3, 2, 32, 32) and (rain == 0).all()


def test_cascade_levels_fit_the_frame():
    assert default_cascade_levels(256, 256) == 6
    assert default_cascade_levels(48, 64) == 3
    assert default_cascade_levels(128, 96) == 4
    assert default_cascade_levels(16, 16) == 3  # pysteps' minimum
