"""Fixtures of the learned-baseline tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from learned_baseline_utils import synthetic_batch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny convolutions run fastest on one thread; two spin-wait badly on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def batch() -> dict[str, torch.Tensor]:
    return synthetic_batch()
