"""CSI/POD/FAR/bias against pysteps.verification.det_cat_fct, pooled over windows, and max-pooled CSI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pysteps.verification.detcatscores import det_cat_fct_accum, det_cat_fct_compute, det_cat_fct_init

from nowcast.evaluation.categorical import CategoricalScores

THRESHOLDS = (0.5, 1.0, 2.0, 4.0, 8.0)


def test_matches_pysteps_pooled_over_windows(fields):
    ensemble, target, mask = fields
    forecast = ensemble.mean(dim=1)
    metric = CategoricalScores(target.shape[1], THRESHOLDS)
    metric.update(forecast[:2], target[:2], mask[:2])
    metric.update(forecast[2:], target[2:], mask[2:])
    got = metric.compute()
    nan_masked = ~mask[:, None].expand_as(target)
    fc = forecast.masked_fill(nan_masked, float("nan")).numpy()
    ob = target.masked_fill(nan_masked, float("nan")).numpy()
    for lead in range(target.shape[1]):
        for j, thr in enumerate(THRESHOLDS):
            table = det_cat_fct_init(thr)
            for i in range(fc.shape[0]):
                det_cat_fct_accum(table, fc[i, lead], ob[i, lead])
            # pysteps counts NaN pixels as correct negatives; they do not enter CSI/POD/FAR/FB
            ref = det_cat_fct_compute(table, scores=["CSI", "POD", "FAR", "BIAS"])
            for ours, theirs in (("csi", "CSI"), ("pod", "POD"), ("far", "FAR"), ("bias", "BIAS")):
                assert float(got[ours][lead, j]) == pytest.approx(ref[theirs], rel=1e-12), (ours, lead, thr)


@pytest.mark.parametrize("pool", [4, 16])
def test_max_pooled_csi_closed_form(fields, pool):
    ensemble, target, _ = fields
    target, forecast = target[..., :32, :32], ensemble[:, 0, ..., :32, :32]
    mask = torch.ones(target.shape[0], 32, 32, dtype=torch.bool)
    metric = CategoricalScores(target.shape[1], (1.0,), pool=pool)
    metric.update(forecast, target, mask)
    b, t = target.shape[:2]

    def blocks(x: torch.Tensor) -> np.ndarray:
        return x.numpy().reshape(b, t, 32 // pool, pool, 32 // pool, pool).max(axis=(3, 5))

    f, o = blocks(forecast) >= 1.0, blocks(target) >= 1.0
    hits = (f & o).sum(axis=(0, 2, 3))
    csi = hits / (f | o).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(metric.compute()["csi"][:, 0].numpy(), csi, rtol=1e-12)


def test_identical_is_perfect_and_dry_is_undefined(fields):
    _, target, mask = fields
    metric = CategoricalScores(target.shape[1], (1.0,))
    metric.update(target, target, mask)
    out = metric.compute()
    assert torch.all(out["csi"] == 1) and torch.all(out["pod"] == 1) and torch.all(out["far"] == 0)
    dry = CategoricalScores(target.shape[1], (1.0,))
    dry.update(torch.zeros_like(target), torch.zeros_like(target), mask)
    assert torch.isnan(dry.compute()["csi"]).all()
