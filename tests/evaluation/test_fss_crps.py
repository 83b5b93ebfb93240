"""FSS against pysteps' fss_init/fss_accum/fss_compute and CRPS against pysteps' probscores.CRPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pysteps.verification.probscores import CRPS_accum, CRPS_compute, CRPS_init
from pysteps.verification.spatialscores import fss_accum, fss_compute, fss_init

from nowcast.evaluation.crps import CRPS, crps_ensemble
from nowcast.evaluation.fss import FSS

THRESHOLDS, SCALES = (1.0, 4.0), (1, 4, 16)


def nan_masked(x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    m = mask[:, None].expand(x.shape[0], x.shape[-3], *x.shape[-2:])
    if x.ndim == 5:
        m = m[:, None].expand_as(x)
    return x.masked_fill(~m, float("nan")).double().numpy()


def test_fss_matches_pysteps_pooled_over_windows(fields):
    ensemble, target, mask = fields
    forecast = ensemble.mean(dim=1)
    metric = FSS(target.shape[1], THRESHOLDS, SCALES)
    metric.update(forecast[:1], target[:1], mask[:1])
    metric.update(forecast[1:], target[1:], mask[1:])
    got = metric.compute().numpy()
    fc, ob = nan_masked(forecast, mask), nan_masked(target, mask)
    for lead in range(target.shape[1]):
        for i, thr in enumerate(THRESHOLDS):
            for j, scale in enumerate(SCALES):
                ref = fss_init(thr, scale)
                for b in range(fc.shape[0]):
                    fss_accum(ref, fc[b, lead], ob[b, lead])
                assert got[lead, i, j] == pytest.approx(fss_compute(ref), rel=1e-9), (lead, thr, scale)


def test_fss_identical_is_one(fields):
    _, target, mask = fields
    metric = FSS(target.shape[1], THRESHOLDS, SCALES)
    metric.update(target, target, mask)
    assert torch.all(metric.compute() == 1)


@pytest.mark.parametrize("members", [1, 4])
def test_crps_matches_pysteps(fields, members):
    ensemble, target, mask = fields
    ensemble = ensemble[:, :members]
    metric = CRPS(target.shape[1])
    metric.update(ensemble, target, mask)
    fc, ob = nan_masked(ensemble, mask), nan_masked(target, mask)
    for lead in range(target.shape[1]):
        ref = CRPS_init()
        CRPS_accum(ref, np.moveaxis(fc[:, :, lead], 1, 0), ob[:, lead])
        # pointwise CRPS is float32 (speed), accumulated in float64: agreement to 1e-6
        assert float(metric.compute()[lead]) == pytest.approx(CRPS_compute(ref), rel=1e-6)


def test_crps_of_one_member_is_mae_and_of_truth_is_zero(fields):
    ensemble, target, mask = fields
    one = CRPS(target.shape[1])
    one.update(ensemble[:, :1], target, mask)
    m = mask[:, None].expand_as(target)
    mae = torch.stack([(ensemble[:, 0, k] - target[:, k]).abs()[m[:, k]].double().mean() for k in range(3)])
    assert torch.allclose(one.compute(), mae, rtol=1e-6)
    perfect = CRPS(target.shape[1])
    perfect.update(target[:, None].expand(-1, 3, -1, -1, -1), target, mask)
    assert torch.allclose(perfect.compute(), torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("members", [2, 5, 20])  # 20: the sorted-members branch
def test_fair_crps_is_the_unbiased_pairwise_estimator(members):
    """Fair CRPS = mean |x_i - y| - sum over pairs i != j of |x_i - x_j| / (2 M (M - 1)), written
    out pair by pair; below the standard estimator, whose spread term it scales by M / (M - 1)."""
    g = torch.Generator().manual_seed(members)
    ens, y = torch.randn(3, members, 6, generator=g), torch.randn(3, 6, generator=g)
    pairs = sum((ens[:, i] - ens[:, j]).abs() for i in range(members) for j in range(members) if i != j)
    expected = (ens - y[:, None]).abs().mean(dim=1) - pairs / (2 * members * (members - 1))
    assert torch.allclose(crps_ensemble(ens, y, fair=True), expected, atol=1e-5)
    assert (crps_ensemble(ens, y, fair=True) <= crps_ensemble(ens, y) + 1e-6).all()
    with pytest.raises(ValueError, match="at least 2"):
        crps_ensemble(ens[:, :1], y, fair=True)


def test_fair_crps_of_a_given_ensemble_size_estimates_that_ensembles_score():
    """``fair=True, size=K`` from two members at a time estimates, without bias, the standard CRPS of
    K-member ensembles from the same distribution: checked against K-member ensembles drawn directly
    (standard normal members, observation 0.5; Monte Carlo over 200,000 draws each). With K = M it
    is the standard estimator of those M members itself."""
    g = torch.Generator().manual_seed(0)
    y = torch.full((200_000,), 0.5)
    pairs = torch.randn(200_000, 2, generator=g)
    eights = torch.randn(200_000, 8, generator=g)
    estimate = crps_ensemble(pairs, y, fair=True, size=8).mean()
    direct = crps_ensemble(eights, y).mean()
    assert abs(float(estimate - direct)) < 0.005
    # and it is not the distribution's own CRPS, which the fair estimator alone targets (0.0348 apart:
    # E|X - X'| / 16 = 2 / sqrt(pi) / 16 for unit normals)
    assert float(direct - crps_ensemble(pairs, y, fair=True).mean()) == pytest.approx(2 / math.pi ** 0.5 / 16,
                                                                                       abs=0.005)
    few, obs = eights[:5], y[:5]
    assert torch.allclose(crps_ensemble(few, obs, fair=True, size=8), crps_ensemble(few, obs))
    with pytest.raises(ValueError, match="size needs fair"):
        crps_ensemble(eights, y, size=8)
