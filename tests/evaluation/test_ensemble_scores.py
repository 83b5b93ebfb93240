"""Ensemble scores against pysteps' own computation on real radar fields, and the bootstrap intervals
against closed-form values.

The real-data "ensemble" is lagged: eight consecutive MeteoSwiss 2016-07-11 frames (2 km) are the
members, the frames after them the observations; uncovered pixels are NaN for pysteps and masked for
nowcast. Real fields bring what random ones do not: large dry areas (ties) and skewed intensities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pysteps.postprocessing import ensemblestats
from pysteps.postprocessing.ensemblestats import excprob
from pysteps.verification import ensscores, probscores
from pysteps.verification.detcontscores import det_cont_fct
from radar_events import EVENTS

from nowcast.evaluation.bootstrap import Pooled, paired_difference, pooled_from_counts
from nowcast.evaluation.ensemble import EnsembleScores, lead_groups, rank_counts

M, T = 8, 3


@pytest.fixture(scope="module")
def lagged(shared_radar):
    """(members (1, M, T, H, W), observed (1, T, H, W), mask (1, H, W)) mm/h of a real event."""
    from data_pipelines.importers import read_frame
    from data_pipelines.sources import get_source

    files = sorted(p for p in (shared_radar / EVENTS["mch"]).iterdir() if p.is_file())[20:20 + M + T]
    if len(files) < M + T:
        pytest.skip("MeteoSwiss 2016-07-11 files not found")
    frames = np.stack([read_frame(f, get_source("mch"), coarsen=2).rain for f in files])  # (M + T, H, W)
    frames = frames[:, 40:168, 80:208]  # 128 x 128 px over the evening's convection
    covered = np.isfinite(frames).all(axis=0)
    rain = torch.from_numpy(np.nan_to_num(frames, nan=0.0)).float()
    members = torch.stack([rain[j:j + T] for j in range(M)])[None]  # member j: frames j .. j + T - 1
    observed = rain[M:M + T][None]
    return members, observed, torch.from_numpy(covered)[None]


def nan_outside(x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    return torch.where(mask, x, torch.nan).numpy().astype(np.float64)


def test_rank_histogram_matches_pysteps_without_ties(lagged):
    members, observed, mask = lagged
    jitter = torch.rand(members.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    f = (members + jitter)[0].reshape(M, -1).numpy().astype(np.float64)
    o = observed[0].reshape(-1).numpy().astype(np.float64) + 5e-4
    reference = ensscores.rankhist_init(M, None)
    ensscores.rankhist_accum(reference, f, o)
    np.testing.assert_array_equal(rank_counts(f, o, None), reference["n"])


def test_rank_histogram_follows_pysteps_with_dry_ties(lagged):
    """With the 0.1 mm/h threshold dry values tie: pysteps draws their ranks at random, nowcast counts
    their expectation, so the counts agree up to pysteps' sampling noise; the pixels counted are the same."""
    members, observed, mask = lagged
    f = np.stack([nan_outside(members[0, j], mask[0].expand(T, -1, -1)) for j in range(M)])
    o = nan_outside(observed[0], mask[0].expand(T, -1, -1))
    reference = ensscores.rankhist_init(M, 0.1)
    np.random.seed(0)
    ensscores.rankhist_accum(reference, f, o)
    mine = rank_counts(f.reshape(M, -1), o.reshape(-1), 0.1)
    n = reference["n"].sum()
    assert mine.sum() == pytest.approx(n) and n > 1000
    sigma = np.sqrt(n * (1 / (M + 1)) * (1 - 1 / (M + 1)))
    assert np.abs(mine - reference["n"]).max() < 6 * sigma


def test_reliability_roc_and_brier_match_pysteps_pooled_over_windows(lagged):
    members, observed, mask = lagged
    scores = EnsembleScores(T, M, thresholds=(1.0, 4.0), n_groups=1)
    # two "windows": the field and its mirror image, pooled
    scores.update(members, observed, mask)
    scores.update(members.flip(-1), observed.flip(-1), mask.flip(-1))
    out = scores.compute()
    cover = mask[0].expand(T, -1, -1)
    fields = [(members[0], observed[0], cover), (members[0].flip(-1), observed[0].flip(-1), cover.flip(-1))]
    for thr in (1.0, 4.0):
        rel, roc = probscores.reldiag_init(thr, 10, min_count=0), probscores.ROC_curve_init(thr, M + 1)
        sq, events, n = 0.0, 0, 0
        for ens, obs, cov in fields:
            f = np.stack([nan_outside(ens[j], cov) for j in range(M)])
            o = nan_outside(obs, cov)
            prob = excprob(f, thr, ignore_nan=False)
            keep = np.isfinite(o)
            probscores.reldiag_accum(rel, prob[keep], o[keep])
            probscores.ROC_curve_accum(roc, prob[keep], o[keep])
            sq += float(((prob[keep] - (o[keep] >= thr)) ** 2).sum())
            events, n = events + int((o[keep] >= thr).sum()), n + int(keep.sum())
        mine = out["reliability"][str(thr)][0]
        assert mine["samples"] == [int(x) for x in rel["sample_size"]]
        with np.errstate(invalid="ignore"):
            x, y = probscores.reldiag_compute(rel)
        np.testing.assert_allclose([np.nan if v is None else v for v in mine["observed_frequency"]], y)
        np.testing.assert_allclose([np.nan if v is None else v for v in mine["forecast_probability"]], x)
        pofd, pod, area = probscores.ROC_curve_compute(roc, compute_area=True)
        np.testing.assert_allclose(out["roc"][str(thr)][0]["pod"], pod)
        np.testing.assert_allclose(out["roc"][str(thr)][0]["pofd"], pofd)
        np.testing.assert_allclose(out["roc"][str(thr)][0]["area"], area)
        brier = out["brier"][str(thr)][0]
        np.testing.assert_allclose(brier["bs"], sq / n)
        # Murphy's decomposition on the reliability diagram's bins (each holds one of the M + 1
        # probabilities of 8 members, so it is exact): BS = reliability - resolution + uncertainty
        base = events / n
        counts, p_sum, o_sum = (np.asarray(rel[k], dtype=float) for k in ("num_idx", "X_sum", "Y_sum"))
        used = counts > 0
        p_k, o_k, n_k = p_sum[used] / counts[used], o_sum[used] / counts[used], counts[used]
        reliability, resolution = (n_k * (p_k - o_k) ** 2).sum() / n, (n_k * (o_k - base) ** 2).sum() / n
        decomposed = reliability - resolution + base * (1 - base)
        np.testing.assert_allclose(brier["bs"], decomposed, rtol=1e-9)
        np.testing.assert_allclose(brier["bss"], 1 - brier["bs"] / (base * (1 - base)))


def test_spread_and_skill_match_pysteps(lagged):
    members, observed, mask = lagged
    scores = EnsembleScores(T, M, n_groups=1)
    scores.update(members, observed, mask)
    ss = scores.compute()["spread_skill"]
    for t in range(T):
        f = np.stack([nan_outside(members[0, j, t], mask[0]) for j in range(M)])
        o = nan_outside(observed[0, t], mask[0])
        mean = ensemblestats.mean(f, ignore_nan=False)
        np.testing.assert_allclose(ss["rmse"][t], det_cont_fct(mean, o, ["RMSE"])["RMSE"], rtol=1e-5)
        # pysteps' spread is the mean over member pairs; the mean squared difference of a pair is
        # twice the (unbiased) member variance
        pairwise_mse = ensscores.ensemble_spread(f, "MSE")
        np.testing.assert_allclose(ss["spread"][t], np.sqrt(pairwise_mse / 2), rtol=1e-5)
        np.testing.assert_allclose(ss["ratio"][t], ss["spread"][t] * np.sqrt((M + 1) / M) / ss["rmse"][t])


def test_a_consistent_ensemble_has_a_flat_histogram_and_unit_spread_ratio():
    """Members and observation drawn from the same distribution: the closed-form answers."""
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(4, 1, 6, 32, 32, generator=g) * 5
    draws = centre + torch.randn(4, M + 1, 6, 32, 32, generator=g)
    scores = EnsembleScores(6, M, rank_min=None)
    scores.update(draws[:, :M], draws[:, M], torch.ones(4, 32, 32, dtype=torch.bool))
    out = scores.compute()
    assert out["rank_histogram"]["reliability_index"] < 0.05
    assert abs(out["rank_histogram"]["outside"] - 2 / (M + 1)) < 0.01
    assert abs(out["spread_skill"]["ratio_all_leads"] - 1.0) < 0.03
    assert out["lead_groups"] == [[0, 2], [2, 4], [4, 6]] == [list(g) for g in lead_groups(6)]


def test_bootstrap_interval_matches_the_standard_error_of_a_mean():
    """For a score that is a plain mean over windows the 95 % interval is about +- 1.96 standard errors."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400)
    ones = np.ones_like(a)
    d = paired_difference(Pooled(a, ones), Pooled(b, ones))
    se = np.std(a - b, ddof=1) / np.sqrt(len(a))
    assert d.value == pytest.approx(a.mean() - b.mean())
    assert d.high - d.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert not d.is_tie and d.low > 0


def test_bootstrap_calls_equal_models_a_tie_and_pools_csi_per_lead():
    counts = np.random.default_rng(1).integers(0, 50, size=(30, 4, 3))
    same = paired_difference(pooled_from_counts(counts), pooled_from_counts(counts))
    assert same.value == 0 and same.low == 0 and same.high == 0 and same.is_tie
    h, m, f = counts.sum(axis=0).T
    assert pooled_from_counts(counts).value() == pytest.approx(np.mean(h / (h + m + f)))
    with pytest.raises(ValueError):
        paired_difference(pooled_from_counts(counts), pooled_from_counts(counts[:10]))


@pytest.mark.parametrize("members", [5, 8, 10])
def test_roc_area_is_the_exact_auc_for_any_member_count(members):
    """The area under the ROC curve drawn at every ensemble probability k/M equals the exact
    Mann-Whitney AUC of the probabilities (ties counted 1/2). With pysteps' linspace thresholds some
    k/M (3/10, 3/5) lay one rounding step above the probabilities, dropping a point of the curve."""
    g = torch.Generator().manual_seed(1)
    truth = torch.rand((1, 1, 32, 32), generator=g) * 3.0
    ensemble = (truth[:, None] + torch.randn((1, members, 1, 32, 32), generator=g)).clamp(min=0)
    scores = EnsembleScores(1, members, thresholds=(1.0,), n_groups=1)
    scores.update(ensemble, truth, torch.ones((1, 32, 32), dtype=torch.bool))
    area = scores.compute()["roc"]["1.0"][0]["area"]
    prob = (ensemble[0, :, 0] >= 1.0).sum(0).flatten().numpy() / members
    event = (truth[0, 0] >= 1.0).flatten().numpy()
    pos, neg = prob[event][:, None], prob[~event][None, :]
    exact = float(((pos > neg) + 0.5 * (pos == neg)).mean())
    assert area == pytest.approx(exact, abs=1e-12)
