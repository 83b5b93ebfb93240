"""Small schema-valid rain frames for the store tests (not a test)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from data_pipelines import store as zstore


def frames(first: int, n: int) -> xr.Dataset:
    """``n`` frames of 12x10 px rain, 5 min apart from frame ``first`` on (seeded by ``first``)."""
    rng = np.random.default_rng(first)
    rain = rng.gamma(0.5, 2.0, (n, 12, 10)).astype(np.float32)
    times = np.datetime64("2021-01-01T00:00", "ns") + np.arange(first, first + n) * np.timedelta64(5, "m")
    return zstore.frames_dataset(rain, times, np.arange(10) * 1e3, np.arange(12)[::-1] * 1e3, "EPSG:3035",
                                 [f"f{i}" for i in range(first, first + n)], {"source": "test"})
