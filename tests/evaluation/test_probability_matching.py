"""Probability-matched ensemble mean against pysteps' empirical-CDF matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data.synthetic import synthetic_rain
from nowcast.evaluation.inputs import probability_matched_mean, reduce_ensemble


def ensemble(members: int = 4, size: int = 32) -> torch.Tensor:
    """(1, M, 2, H, W) mm/h: members of one synthetic event, shifted and scaled apart."""
    rain = np.nan_to_num(synthetic_rain(2, size, size, seed=3))
    fields = [np.roll(rain, m, axis=-1) * (0.6 + 0.3 * m) for m in range(members)]
    return torch.from_numpy(np.stack(fields))[None].float()


def test_matches_pysteps_empirical_cdf_matching():
    probmatching = pytest.importorskip("pysteps.postprocessing.probmatching")
    ens = ensemble()
    ours = probability_matched_mean(ens)
    m = ens.shape[1]
    for t in range(ens.shape[2]):
        mean = ens[0, :, t].mean(0).numpy().astype(np.float64)
        pooled = np.sort(ens[0, :, t].numpy().ravel())[m // 2::m]
        ref = probmatching.nonparam_match_empirical_cdf(mean, pooled)
        np.testing.assert_allclose(ours[0, t].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_keeps_the_members_intensities_and_the_means_pattern():
    ens = ensemble()
    pm, mean = reduce_ensemble(ens, "pm_mean"), reduce_ensemble(ens, "mean")
    assert pm.amax() > 1.3 * mean.amax()  # the plain mean smooths the peaks away
    flat_pm, flat_mean = pm[0, 0].ravel(), mean[0, 0].ravel()
    wet = flat_mean > flat_mean.min()
    order = flat_mean[wet].argsort()
    assert bool((flat_pm[wet][order].diff() >= 0).all())  # ranks of the mean kept
    with pytest.raises(ValueError, match="pm_mean"):
        reduce_ensemble(ens, "median")
