"""RAPSD against pysteps.utils.spectral.rapsd; RALSD closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pysteps.utils.spectral import rapsd as pysteps_rapsd

from nowcast.evaluation.spectra import RAPSD, rapsd


@pytest.mark.parametrize("shape", [(32, 32), (33, 33), (24, 40), (41, 30)])
def test_rapsd_matches_pysteps(shape):
    field = np.random.default_rng(1).gamma(0.5, 2.0, size=shape)
    ref, ref_freq = pysteps_rapsd(field, fft_method=np.fft, return_freq=True, d=2.0)
    got, freq = rapsd(torch.from_numpy(field), d=2.0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(freq.numpy(), ref_freq, rtol=1e-12)


def test_metric_averages_windows_and_ralsd(fields):
    _, target, mask = fields
    metric = RAPSD(target.shape[1], pixel_size_km=2.0)
    metric.update(2 * target[:1], target[:1], mask[:1])
    metric.update(2 * target[1:], target[1:], mask[1:])
    out = metric.compute()
    zeroed = torch.where(mask[:, None], target, torch.zeros(())).double().numpy()
    for lead in range(target.shape[1]):
        ref = np.mean([pysteps_rapsd(f, fft_method=np.fft) for f in zeroed[:, lead]], axis=0)
        np.testing.assert_allclose(out["observed"][lead].numpy(), ref, rtol=1e-10)
        np.testing.assert_allclose(out["forecast"][lead].numpy(), 4 * ref, rtol=1e-10)
    # twice the rain is 4x the power at every wavenumber: 10 log10(4) dB everywhere
    assert torch.allclose(out["ralsd"], torch.full((3,), 10 * math.log10(4), dtype=torch.float64))
    assert out["freq"][1].item() == pytest.approx(1 / (48 * 2.0))


def test_ralsd_identical_is_zero_and_size_is_fixed(fields):
    _, target, mask = fields
    metric = RAPSD(target.shape[1])
    metric.update(target, target, mask)
    assert torch.all(metric.compute()["ralsd"] == 0)
    with pytest.raises(ValueError, match="one frame size"):
        metric.update(target[..., :32], target[..., :32], mask[..., :32])
