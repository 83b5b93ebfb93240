"""Shared fixtures. Real-data tests use ../shared/radar and skip with a reason when absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nowcast.types import radar_dir, weights_dir

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_radar() -> Path:
    path = radar_dir()
    if not path.is_dir():
        pytest.skip(f"real radar data not found at {path} (set NOWCAST_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    path = weights_dir()
    if not (path / "lpips_alexnet_features.pth").exists():
        pytest.skip(f"offline LPIPS/FID weights not found in {path} (set NOWCAST_WEIGHTS)")
    return path
