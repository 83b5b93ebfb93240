"""MSE (mm/h, pixel), PSNR and SSIM: closed forms, numpy and scikit-image references, masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from nowcast.evaluation.continuous import MSE, PSNR, SSIM


def pixel_np(rain: np.ndarray) -> np.ndarray:
    """The DESIGN.md pixel scale written independently in numpy."""
    with np.errstate(divide="ignore"):
        dbz = 10 * np.log10(200 * rain.astype(np.float64) ** 1.6)
    return np.where(rain > 0, np.clip(dbz, 0, 60) / 60, 0.0)


def test_mse_and_psnr_match_numpy(fields):
    ensemble, target, mask = fields
    forecast = ensemble[:, 0]
    m = mask[:, None].expand_as(target).numpy()
    mse_mm, mse_px, psnr = MSE(3, "mm_h"), MSE(3, "pixel"), PSNR(3)
    for metric in (mse_mm, mse_px, psnr):
        metric.update(forecast, target, mask)
    f, o = forecast.numpy().astype(np.float64), target.numpy().astype(np.float64)
    ref_mm = [((f - o) ** 2)[:, k][m[:, k]].mean() for k in range(3)]
    ref_px = [((pixel_np(f) - pixel_np(o)) ** 2)[:, k][m[:, k]].mean() for k in range(3)]
    np.testing.assert_allclose(mse_mm.compute().numpy(), ref_mm, rtol=1e-5)
    np.testing.assert_allclose(mse_px.compute().numpy(), ref_px, rtol=1e-4)
    np.testing.assert_allclose(psnr.compute().numpy(), -10 * np.log10(ref_px), rtol=1e-5)


def test_known_values():
    target = torch.full((2, 2, 16, 16), 2.0)
    mask = torch.ones(2, 16, 16, dtype=torch.bool)
    mse = MSE(2)
    mse.update(target + 0.5, target, mask)
    assert torch.allclose(mse.compute(), torch.full((2,), 0.25, dtype=torch.float64))
    # 20 dBZ exactly is pixel 1/3, 40 dBZ is 2/3: pixel error 1/3 -> PSNR = 20 log10(3)
    r20 = (10 ** 2 / 200) ** (1 / 1.6)
    r40 = (10 ** 4 / 200) ** (1 / 1.6)
    psnr = PSNR(2)
    psnr.update(torch.full_like(target, r40), torch.full_like(target, r20), mask)
    assert psnr.compute().numpy() == pytest.approx([20 * math.log10(3)] * 2, rel=1e-5)
    same = PSNR(2)
    same.update(target, target, mask)
    assert torch.isinf(same.compute()).all()  # pooled MSE 0: +inf (the suite reports None)


def test_ssim_matches_skimage_on_covered_interior(fields):
    ensemble, target, _ = fields
    forecast = ensemble[:, 0]
    b, t, h, w = target.shape
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[:, 5:-5, 5:-5] = True  # away from the border, where the two pad differently
    metric = SSIM(t)
    metric.update(forecast, target, mask)
    m = mask.numpy()
    ref = []
    for k in range(t):
        vals = []
        for i in range(b):
            f = pixel_np(forecast[i, k].numpy()) * m[i]
            o = pixel_np(target[i, k].numpy()) * m[i]
            _, full = structural_similarity(f, o, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, full=True)
            vals.append(full[m[i]])
        ref.append(np.concatenate(vals).mean())
    np.testing.assert_allclose(metric.compute().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_ssim_identical_is_one(fields):
    _, target, mask = fields
    metric = SSIM(target.shape[1])
    metric.update(target, target, mask)
    assert torch.allclose(metric.compute(), torch.ones(target.shape[1], dtype=torch.float64))
