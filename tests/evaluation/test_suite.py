"""ScoreSuite: identical inputs give perfect scores, masked pixels change nothing, streaming equals
one update, the result is strict JSON, bad input fails clearly."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nowcast.evaluation.suite import ScoreSuite


def run(ensemble, target, mask, splits=None, **kw) -> dict:
    suite = ScoreSuite(target.shape[1], perceptual=False, **kw)
    for part in splits or [slice(None)]:
        suite.update(ensemble[part], target[part], mask[part])
    return suite.compute()


def test_identical_inputs_are_perfect(fields):
    _, target, mask = fields
    out = run(target[:, None].expand(-1, 2, -1, -1, -1), target, mask)
    json.dumps(out, allow_nan=False)
    assert all(v == 1 for v in out["csi"]["1.0"]["per_lead"])
    assert out["csi_pool16"]["8.0"]["mean"] == 1
    assert out["mse_mm_h"]["mean"] == 0 and out["mse_pixel"]["mean"] == 0
    assert out["psnr"] == {"per_lead": [None] * 3, "mean": None}  # +inf: no error at all
    assert out["ssim"]["mean"] == pytest.approx(1.0)
    assert out["fss"]["4.0"]["16"]["mean"] == 1
    assert out["crps"]["mean"] == 0 and out["ralsd"]["mean"] == 0
    assert out["rapsd"]["forecast"] == out["rapsd"]["observed"]
    assert out["skipped"] == ["lpips", "fid"]


def test_masked_pixels_change_nothing(fields):
    ensemble, target, mask = fields
    base = run(ensemble, target, mask)
    hidden = ~mask[:, None, None].expand_as(ensemble)
    noisy_ens = ensemble.masked_fill(hidden, float("nan"))
    noisy_ens = torch.where(hidden & (torch.rand_like(ensemble) < 0.5), torch.full((), 50.0), noisy_ens)
    noisy_target = target.masked_fill(~mask[:, None].expand_as(target), 20.0)
    assert run(noisy_ens, noisy_target, mask) == base


def test_streaming_equals_one_update(fields):
    ensemble, target, mask = fields
    one = run(ensemble, target, mask)
    two = run(ensemble, target, mask, splits=[slice(0, 1), slice(1, None)])
    assert _close(one, two)
    assert not _close(one, run(ensemble[:1], target[:1], mask[:1]))  # the check can fail


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_point_and_sample_choices(fields):
    ensemble, target, mask = fields
    mean = run(ensemble, target, mask)
    first = run(ensemble, target, mask, point="member0", sample="mean")
    only_first = run(ensemble[:, :1], target, mask)
    assert first["mse_mm_h"] == only_first["mse_mm_h"] and first["csi"] == only_first["csi"]
    assert mean["mse_mm_h"] != first["mse_mm_h"]
    assert first["rapsd"] == run(ensemble.mean(1, keepdim=True), target, mask)["rapsd"]
    assert mean["crps"] == first["crps"]  # CRPS always uses every member


def test_bad_input_fails_clearly(fields):
    ensemble, target, mask = fields
    suite = ScoreSuite(3, perceptual=False)
    with pytest.raises(ValueError, match=r"\(B, M, T, H, W\)"):
        suite.update(ensemble[:, 0], target, mask)
    with pytest.raises(ValueError, match="lead times"):
        ScoreSuite(4, perceptual=False).update(ensemble, target, mask)
    with pytest.raises(ValueError, match="non-finite"):
        suite.update(ensemble.masked_fill(mask[:, None, None], float("nan")), target, mask)
    with pytest.raises(ValueError, match="bool"):
        suite.update(ensemble, target, mask.float())
    with pytest.raises(ValueError, match="point"):
        ScoreSuite(3, point="median")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NOWCAST_SLOW_TESTS"), reason="set NOWCAST_SLOW_TESTS=1 (about 1 min)")
def test_perceptual_end_to_end_identical_is_zero(shared_weights, field_factory):
    ensemble, target, mask = field_factory(b=1, m=2, t=2, h=32, w=32)
    suite = ScoreSuite(2, perceptual=True, weights_dir=shared_weights)
    suite.update(target[:, None].expand(-1, 2, -1, -1, -1), target, mask)
    out = suite.compute()
    assert out["skipped"] == [] and out["lpips"]["mean"] == pytest.approx(0, abs=1e-6)
    assert out["fid"]["mean"] == pytest.approx(0, abs=1e-3)
