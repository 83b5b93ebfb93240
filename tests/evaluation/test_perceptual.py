"""LPIPS and FID: offline weights only, against torchmetrics' own pipelines on the same frames."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from nowcast.evaluation.perceptual import (
    FID,
    FID_FILE,
    LPIPS,
    LPIPS_FILE,
    MissingWeightsError,
    build_lpips_alex,
    frechet_distance,
)
from nowcast.evaluation.suite import ScoreSuite


def frames(rain: torch.Tensor) -> torch.Tensor:
    from nowcast.data.transforms import pixel_scale
    b, t, h, w = rain.shape
    return pixel_scale(rain).reshape(b * t, 1, h, w).expand(-1, 3, -1, -1)


def test_lpips_matches_torchmetrics_with_the_same_alexnet(
    shared_weights, tmp_path, monkeypatch, field_factory
):
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    # torchvision reads a cached AlexNet checkpoint without downloading: give it our features
    # (the classifier, unused by LPIPS, as broadcast zeros so the file stays tiny)
    features = torch.load(shared_weights / LPIPS_FILE, weights_only=True)
    full = {f"features.{k}": v for k, v in features.items()}
    for name, shape in (("1", (4096, 9216)), ("4", (4096, 4096)), ("6", (1000, 4096))):
        full[f"classifier.{name}.weight"] = torch.zeros(1).expand(shape)
        full[f"classifier.{name}.bias"] = torch.zeros(1).expand(shape[:1])
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True, reduction="sum")

    ensemble, target, mask = field_factory(b=2, m=1, t=2, h=64, w=64)
    mask[:] = True
    ours = LPIPS(2, weights_dir=shared_weights)
    ours.update(ensemble[:1, 0], target[:1], mask[:1])  # streaming: two updates
    ours.update(ensemble[1:, 0], target[1:], mask[1:])
    for lead in range(2):
        reference.reset()
        reference.update(frames(ensemble[:, 0, lead : lead + 1]), frames(target[:, lead : lead + 1]))
        assert float(ours.compute()[lead]) == pytest.approx(float(reference.compute()) / 2, rel=1e-5)
    assert float(ours.compute().min()) > 0.01

    same = LPIPS(2, weights_dir=shared_weights)
    same.update(target, target, mask)
    assert torch.all(same.compute().abs() < 1e-6)
    assert torch.equal(ours.net.net.slice1[0].weight, features["0.weight"])  # really the file's tensors


def test_fid_features_match_torchmetrics(shared_weights, field_factory):
    from torchmetrics.image.fid import FrechetInceptionDistance

    ensemble, target, mask = field_factory(b=1, m=1, t=2, h=32, w=32)
    ours = FID(2, weights_dir=shared_weights, per_lead=True)
    ours.update(ensemble[:, 0], target, mask)
    reference = FrechetInceptionDistance(
        feature=2048, normalize=True, feature_extractor_weights_path=str(shared_weights / FID_FILE)
    )
    zero = torch.zeros(())
    masked = ~mask[:, None].expand_as(target)
    reference.update(frames(ensemble[:, 0].masked_fill(masked, zero)), real=False)
    reference.update(frames(target.masked_fill(masked, zero)), real=True)
    for side in ("fake", "real"):
        ref_sum = getattr(reference, f"{side}_features_sum")
        assert torch.allclose(getattr(ours, f"{side}_sum")[0], ref_sum, rtol=1e-5, atol=1e-6)
        assert torch.allclose(getattr(ours, f"{side}_sum")[1:].sum(0), ref_sum, rtol=1e-5, atol=1e-6)
        ref_cov = getattr(reference, f"{side}_features_cov_sum")
        assert torch.allclose(getattr(ours, f"{side}_cov")[0], ref_cov, rtol=1e-5, atol=1e-5)
    assert float(ours.fake_n[0]) == 2 and float(ours.fake_n[1]) == 1
    # compute() (2048 x 2048 eigendecompositions, slow on a shared CPU) is checked in closed form
    # below and end to end on identical inputs in test_suite.py only when NOWCAST_SLOW_TESTS is set


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(16, 40)), rng.normal(size=(16, 40)) * 2
    c1, c2 = a @ a.T / 40, b @ b.T / 40
    m1, m2 = rng.normal(size=16), rng.normal(size=16)
    ref = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    got = frechet_distance(*(torch.from_numpy(x) for x in (m1, c1, m2, c2)))
    assert float(got) == pytest.approx(ref, rel=1e-8)


def test_refuses_to_run_without_weights(tmp_path, shared_weights):
    with pytest.raises(MissingWeightsError, match=LPIPS_FILE):
        LPIPS(2, weights_dir=tmp_path)
    with pytest.raises(MissingWeightsError, match=FID_FILE):
        FID(2, weights_dir=tmp_path)
    with pytest.raises(MissingWeightsError, match=LPIPS_FILE):
        ScoreSuite(2, perceptual=True, weights_dir=tmp_path)
    # an incomplete backbone file fails instead of leaving random tensors in place
    partial = torch.load(shared_weights / LPIPS_FILE, weights_only=True)
    partial.pop("10.weight")
    torch.save(partial, tmp_path / LPIPS_FILE)
    with pytest.raises(ValueError, match=LPIPS_FILE):
        build_lpips_alex(tmp_path)


def test_suite_auto_skips_and_says_so(tmp_path, field_factory):
    ensemble, target, mask = field_factory(b=1, m=2, t=2, h=32, w=32)
    suite = ScoreSuite(2, perceptual="auto", weights_dir=tmp_path)
    suite.update(ensemble, target, mask)
    out = suite.compute()
    assert out["skipped"] == ["lpips", "fid"] and LPIPS_FILE in out["skipped_reason"]
    assert "lpips" not in out and "fid" not in out
