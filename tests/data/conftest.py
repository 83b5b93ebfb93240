"""Small stores for the loader tests (synthetic, a few dozen frames of 48-64 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.data.synthetic import synthetic_event, write_synthetic_store


@pytest.fixture(scope="module")
def syn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame 64x64 synthetic store (frames 12:00 .. 14:25, 5 min)."""
    return write_synthetic_store(tmp_path_factory.mktemp("stores") / "syn.zarr",
                                 n_frames=30, height=64, width=64, seed=1)


def write_store(ds: xr.Dataset, path: Path) -> Path:
    ds = ds.copy()
    ds["source_file"] = ds["source_file"].astype(object)
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return path


@pytest.fixture(scope="module")
def holey_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 synthetic frames with frames 7 and 13 missing (two gaps)."""
    ds = synthetic_event(n_frames=20, height=32, width=32, seed=2)
    keep = np.setdiff1d(np.arange(20), [7, 13])
    return write_store(ds.isel(time=keep), tmp_path_factory.mktemp("stores") / "holey.zarr")


@pytest.fixture(scope="session")
def store_writer():
    """``write(ds, path) -> path``: a dataset written as an ingested store would be."""
    return write_store
