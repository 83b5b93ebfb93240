"""A synthetic radar event the package generates itself (no data files needed).

The event imitates what makes real radar rain hard to nowcast:

- **spatial structure**: a Gaussian field with a power-law spectrum ``P(k) ~ k**beta``
  (``beta = -3`` by default, close to the radially averaged spectra of real rain fields),
  thresholded and exponentiated into mm/h, so that about a quarter of the domain is wet and
  the cores reach tens of mm/h (log-normal-like intensities);
- **growth and decay**: the field evolves in a Lagrangian frame as a scale-dependent AR(1)
  process in Fourier space (small scales decorrelate within minutes, large ones in about an
  hour, as in STEPS, Seed 2003), plus a slow event-scale rise and fall of the rain amount;
- **advection**: a smooth, spatially varying motion field (a uniform drift plus a gentle
  large-scale rotation) moves the field; :func:`synthetic_motion` returns the true field;
- **coverage**: NaN outside a circular-ish radar footprint;
- a 5-minute step on a 2 km grid in a real projection (ETRS89 / LAEA Europe, EPSG:3035).

Everything is seeded and uses only numpy/scipy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from nowcast.schema import RAIN, SOURCE_FILE, make_rain_dataset
from nowcast.types import RAIN_THRESHOLD_MM_H

#: projection of the synthetic grid (ETRS89-extended / LAEA Europe)
SYNTHETIC_CRS = "EPSG:3035"
#: grid centre (m, EPSG:3035): roughly over the Swiss plateau
_CENTRE_X, _CENTRE_Y = 4_200_000.0, 2_650_000.0
#: spectral slope of the underlying Gaussian field (radially averaged power ~ k**beta)
SPECTRAL_BETA = -3.0
#: fraction of the Gaussian field that is wet (>= 0.1 mm/h) at mid event
_WET_FRACTION = 0.3
#: e-folding of rain rate per standard deviation of the Gaussian field above the wet threshold
_LOG_RATE_PER_SIGMA = 2.5
#: soft upper limit of the rain rate (mm/h), about 55 dBZ: hail-free convective cores
_RAIN_MAX_MM_H = 120.0
#: wavenumber (cycles/px) of the large-scale break of the spectrum: 1/48 px = 96 km at 2 km
_K_BREAK = 1.0 / 48.0
#: Lagrangian decorrelation time (steps) of the 64 km scale, and its scale exponent
_TAU_STEPS_64KM, _TAU_SCALE_EXPONENT = 14.0, 0.9


def _motion_params(seed: int) -> tuple[float, float, float]:
    """Drift (u0, v0) in px/step and rotation amplitude for a seed."""
    rng = np.random.default_rng([seed, 1])
    speed = rng.uniform(1.0, 2.0)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return speed * np.cos(angle), speed * np.sin(angle), rng.uniform(0.2, 0.4)


def _motion_on(rows: np.ndarray, cols: np.ndarray, height: int, width: int, seed: int) -> np.ndarray:
    """Motion (2, ...) px/step at arbitrary (row, col) positions of an (height, width) frame."""
    u0, v0, amp = _motion_params(seed)
    # a large-scale vortex centred on the frame: smooth, divergence free
    ky, kx = np.pi / max(height, 1), np.pi / max(width, 1)
    yc, xc = rows - (height - 1) / 2.0, cols - (width - 1) / 2.0
    u = u0 + amp * np.sin(ky * yc) * np.cos(kx * xc)
    v = v0 - amp * (kx / ky) * np.cos(ky * yc) * np.sin(kx * xc)
    return np.stack([u, v]).astype(np.float32)


def synthetic_motion(height: int = 128, width: int = 128, seed: int = 0) -> np.ndarray:
    """The true advection field of :func:`synthetic_event`: (2, H, W) float32 px/step, (u: +x, v: +y)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return _motion_on(rows, cols, height, width, seed)


def _spectral_filter(shape: tuple[int, int], beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude filter ``k**(beta/2)`` and the wavenumber (cycles/px) on an rfft2 grid."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(ky, kx)
    # flat below the scale break so that the domain-scale modes do not dominate the variance
    amp = np.where(k > 0, np.maximum(k, _K_BREAK) ** (beta / 2.0), 0.0)
    return amp, k


def _lagrangian_fields(n: int, shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """(n, *shape) unit-variance Gaussian fields evolving as a scale-dependent spectral AR(1)."""
    amp, k = _spectral_filter(shape, beta)
    scale_km = 2.0 / np.maximum(k, 1.0 / max(shape))  # wavelength in km at 2 km pixels
    tau = _TAU_STEPS_64KM * (scale_km / 64.0) ** _TAU_SCALE_EXPONENT
    phi = np.exp(-1.0 / np.maximum(tau, 0.3))
    innov = np.sqrt(1.0 - phi**2)
    spec = np.fft.rfft2(rng.standard_normal(shape))
    out = np.empty((n, *shape), dtype=np.float64)
    for t in range(n):
        if t:
            spec = phi * spec + innov * np.fft.rfft2(rng.standard_normal(shape))
        out[t] = np.fft.irfft2(amp * spec, s=shape)
    # one constant scale for all frames keeps the temporal evolution intact; the theoretical
    # variance of the filtered white noise is sum(|amp|^2) over the full spectrum / N
    return out / out[0].std()


def _coverage(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool radar footprint: a disc with a wobbly edge covering most of the frame."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    yc, xc = (height - 1) / 2.0, (width - 1) / 2.0
    theta = np.arctan2(rows - yc, cols - xc)
    radius = 0.5 * min(height, width) * (1.0 + 0.06 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
                                         + 0.04 * np.cos(5 * theta + rng.uniform(0, 2 * np.pi)))
    return np.hypot(rows - yc, cols - xc) <= 0.97 * radius


def synthetic_rain(
    n_frames: int = 24, height: int = 128, width: int = 128, seed: int = 0, beta: float = SPECTRAL_BETA
) -> np.ndarray:
    """The rain of :func:`synthetic_event` as an array: (T, H, W) float32 mm/h, NaN outside coverage."""
    if n_frames < 1 or height < 8 or width < 8:
        raise ValueError(f"need n_frames >= 1 and a frame of at least 8x8, got {n_frames}, {height}x{width}")
    rng = np.random.default_rng([seed, 0])
    u0, v0, amp = _motion_params(seed)
    # margin so that back-trajectories of up to n_frames steps stay inside the generated field
    margin = int(np.ceil((n_frames - 1) * (np.hypot(u0, v0) + 1.5 * amp))) + 8
    big = (height + 2 * margin, width + 2 * margin)
    fields = _lagrangian_fields(n_frames, big, beta, rng)

    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    # event-scale envelope: the wet area rises then falls (about +-30 % around mid event)
    envelope = 0.3 * np.sin(np.pi * (np.arange(n_frames) + 0.5) / n_frames) - 0.15
    g_wet = _gaussian_quantile(1.0 - _WET_FRACTION)
    out = np.empty((n_frames, height, width), dtype=np.float32)
    r, c = rows.copy(), cols.copy()
    for t in range(n_frames):
        if t:  # one semi-Lagrangian back step (midpoint rule) along the steady motion field
            um, vm = _motion_on(r, c, height, width, seed)
            rh, ch = r - 0.5 * vm, c - 0.5 * um
            um, vm = _motion_on(rh, ch, height, width, seed)
            r, c = r - vm, c - um
        g = ndimage.map_coordinates(fields[t], [r + margin, c + margin], order=1, mode="nearest")
        excess = g + envelope[t] - g_wet
        rain = RAIN_THRESHOLD_MM_H * np.exp(_LOG_RATE_PER_SIGMA * np.maximum(excess, 0.0))
        rain = _RAIN_MAX_MM_H * np.tanh(rain / _RAIN_MAX_MM_H)
        out[t] = np.where(excess > 0.0, rain, 0.0)
    out[:, ~_coverage(height, width, rng)] = np.nan
    return out


def _gaussian_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def synthetic_event(
    n_frames: int = 24,
    height: int = 128,
    width: int = 128,
    pixel_size_m: float = 2000.0,
    timestep_minutes: float = 5.0,
    seed: int = 0,
    start: str = "2024-06-01T12:00",
) -> xr.Dataset:
    """A seeded synthetic radar event as a schema-conforming store dataset.

    Returns an ``xarray.Dataset`` made by :func:`nowcast.schema.make_rain_dataset`: ``rain_rate``
    (time, y, x) float32 mm/h (NaN outside the circular coverage), 5-min frames from ``start``
    on an EPSG:3035 grid of ``pixel_size_m`` pixels centred near (4200 km E, 2650 km N). The
    true motion (px/step) is :func:`synthetic_motion` ``(height, width, seed)``; its mean drift
    is in the attributes ``motion_u_px_per_step`` / ``motion_v_px_per_step``.
    """
    rain = synthetic_rain(n_frames, height, width, seed)
    x = _CENTRE_X + (np.arange(width) - (width - 1) / 2.0) * pixel_size_m
    y = _CENTRE_Y - (np.arange(height) - (height - 1) / 2.0) * pixel_size_m  # rows run north -> south
    step = np.timedelta64(int(round(timestep_minutes * 60)), "s")
    times = np.datetime64(start, "s") + step * np.arange(n_frames)
    u0, v0, _ = _motion_params(seed)
    attrs: dict[str, Any] = {
        "title": "synthetic radar event",
        "source": f"nowcast.data.synthetic (seed {seed})",
        "product": "synthetic rain rate",
        "conversion": "none (generated in mm/h)",
        "timestep_minutes": float(timestep_minutes),
        "synthetic_seed": int(seed),
        "spectral_beta": SPECTRAL_BETA,
        "motion_u_px_per_step": float(u0),
        "motion_v_px_per_step": float(v0),
    }
    files = [f"synthetic-seed{seed}-{i:04d}" for i in range(n_frames)]
    return make_rain_dataset(rain, times, x, y, SYNTHETIC_CRS, files, attrs)


def write_synthetic_store(path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`synthetic_event` (``**kwargs`` passed on) to a zarr store at ``path`` (overwrites)."""
    path = Path(path)
    ds = synthetic_event(**kwargs)
    # the layout of ingested stores (data_pipelines.store): zarr v2, consolidated, one frame per
    # chunk, times as int64 seconds, variable-length strings
    ds[SOURCE_FILE] = ds[SOURCE_FILE].astype(object)
    h, w = ds.sizes["y"], ds.sizes["x"]
    encoding = {RAIN: {"chunks": (1, h, w)}, SOURCE_FILE: {"dtype": object},
                "time": {"units": "seconds since 1970-01-01 00:00:00", "dtype": "int64"}}
    ds.to_zarr(path, mode="w", encoding=encoding, zarr_format=2, consolidated=True)
    return path
