"""Random rain fields shared by the evaluation tests (small, so every test stays fast)."""

from __future__ import annotations

import pytest
import torch


def make_fields(b: int = 3, m: int = 4, t: int = 3, h: int = 48, w: int = 40, seed: int = 0):
    """(ensemble (B,M,T,H,W), target (B,T,H,W), mask (B,H,W)) in mm/h: log-normal rain with dry
    patches, members = target + noise, a mask that hides a different corner of every window.
    Values are continuous, so none equals a threshold exactly (pysteps uses >, we use >=)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.exp(torch.randn(b, t, h, w, generator=g) * 1.2)
    target = torch.where(torch.rand(b, t, h, w, generator=g) < 0.3, torch.zeros(()), target)
    noise = torch.exp(torch.randn(b, m, t, h, w, generator=g) * 0.5)
    ensemble = target[:, None] * noise
    ensemble = torch.where(torch.rand(b, m, t, h, w, generator=g) < 0.2, torch.zeros(()), ensemble)
    mask = torch.ones(b, h, w, dtype=torch.bool)
    for i in range(b):
        mask[i, : 5 + 3 * i, : 7 + 2 * i] = False
    return ensemble, target, mask


@pytest.fixture
def fields():
    return make_fields()


@pytest.fixture
def field_factory():
    """:func:`make_fields` itself, for tests that need other sizes."""
    return make_fields
