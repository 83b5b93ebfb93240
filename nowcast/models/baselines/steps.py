"""pysteps STEPS: a stochastic ensemble nowcast (Bowler et al. 2006; Seed et al. 2013).

Follows the pysteps recipe: rain rate -> dB (threshold 0.1 mm/h, dry = -15 dB), motion from
:func:`nowcast.data.motion.estimate_motion`, ``pysteps.nowcasts.get_method("steps")`` with
nonparametric noise and velocity perturbations, then back to mm/h (below 0.1 mm/h -> 0).
Inputs with too little rain for STEPS' statistics give an all-dry forecast (logged).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import numpy as np

from nowcast.data.motion import rain_to_flow_input
from nowcast.models.base import FORECASTERS, DoesNotFitError, whole_number
from nowcast.models.baselines.extrapolation import PerSampleForecaster
from nowcast.types import RAIN_THRESHOLD_MM_H, GridSpec, WindowSpec

log = logging.getLogger(__name__)

#: dB of the rain threshold (10 log10 0.1 = -10 dB)
_DB_THRESHOLD = 10.0 * math.log10(RAIN_THRESHOLD_MM_H)
#: fewer rainy pixels than this fraction in the last frame: no structure for STEPS to evolve
_MIN_RAIN_FRACTION = 1e-3
#: the fewest cascade levels pysteps' Gaussian bandpass filter accepts
MIN_CASCADE_LEVELS = 3
#: pixel size (km) and time step (min) of a model never bound to a store (the radar-mix grid)
_UNBOUND_KM, _UNBOUND_MINUTES = 2.0, 5.0


def default_cascade_levels(height: int, width: int) -> int:
    """Cascade levels for a frame size: 6 (pysteps' default) from 256 px, fewer for small crops.

    Each level halves the spatial scale, so a 48-px frame supports about 3 meaningful ones;
    3 is also the least pysteps' Gaussian bandpass filter accepts (:data:`MIN_CASCADE_LEVELS`).
    """
    return int(max(MIN_CASCADE_LEVELS, min(6, math.floor(math.log2(min(height, width))) - 2)))


@FORECASTERS.register("steps")
class Steps(PerSampleForecaster):
    """STEPS ensemble.

    Args:
        n_in: past frames (>= ar_order + 1; the motion field uses all of them).
        kmperpixel: grid spacing in km; None: the store's (see :meth:`bind`), 2 km before binding.
        timestep: minutes between frames; None: the store's, 5 min before binding.
        n_cascade_levels: cascade levels (>= 3); None chooses from the frame size.
        ar_order: order of the AR model of each cascade level (>= 1).
        noise_method, vel_pert_method, mask_method, probmatching_method: pysteps options.
        fft_method, num_workers: pysteps performance options (numpy FFT and 1 worker keep
            small runs cheap and reproducible).
    """

    summary = "pysteps STEPS: extrapolation with cascade-decomposed stochastic perturbations (ensemble)"

    name = "steps"
    deterministic = False

    def __init__(
        self,
        n_in: int = 4,
        kmperpixel: float | None = None,
        timestep: float | None = None,
        n_cascade_levels: int | None = None,
        ar_order: int = 2,
        noise_method: str = "nonparametric",
        vel_pert_method: str | None = "bps",
        mask_method: str | None = "incremental",
        probmatching_method: str | None = "cdf",
        motion_method: str = "LK",
        fft_method: str = "numpy",
        num_workers: int = 1,
    ) -> None:
        super().__init__()
        whole_number("ar_order", ar_order, 1)
        if n_cascade_levels is not None:
            whole_number("n_cascade_levels", n_cascade_levels, MIN_CASCADE_LEVELS)
        if n_in < ar_order + 1:
            raise ValueError(f"steps with ar_order={ar_order} needs n_in >= {ar_order + 1}")
        self.n_in = n_in
        #: what was given (None: the store's); bind() fills in the store's values
        self._given = {"kmperpixel": kmperpixel, "timestep": timestep}
        self.kmperpixel = _UNBOUND_KM if kmperpixel is None else float(kmperpixel)
        self.timestep = _UNBOUND_MINUTES if timestep is None else float(timestep)
        self.n_cascade_levels = n_cascade_levels
        self.ar_order = ar_order
        self.noise_method = noise_method
        self.vel_pert_method = vel_pert_method
        self.mask_method = mask_method
        self.probmatching_method = probmatching_method
        self.motion_method = motion_method
        self.fft_method = fft_method
        self.num_workers = num_workers

    def bind(self, window: WindowSpec | None = None, grid: GridSpec | None = None) -> Steps:
        """Take the pixel size and time step of the data (STEPS' scale filters and its AR
        parameters depend on both); a value given to ``__init__`` must agree with the data."""
        super().bind(window, grid)
        found = {"kmperpixel": grid.pixel_size_m / 1000.0 if grid is not None else None,
                 "timestep": window.timestep_minutes if window is not None else None}
        units = {"kmperpixel": "km pixels", "timestep": "min time step"}
        for key, value in found.items():
            given = self._given[key]
            if value is None:
                continue
            if given is not None and abs(given - value) > 0.01 * value:
                raise DoesNotFitError(f"{key}={given:g} was given but the data has {value:g} {units[key]}; "
                                      f"drop {key}, the data's is used")
            setattr(self, key, float(value))
        return self

    def _forecast_one(self, past: np.ndarray, n_out: int, members: int, seed: int,
                      motion: np.ndarray | None) -> np.ndarray:
        from pysteps import nowcasts
        from pysteps.utils import transformation

        h, w = past.shape[-2:]
        rain_fraction = float((past[-1] >= RAIN_THRESHOLD_MM_H).mean())
        if rain_fraction < _MIN_RAIN_FRACTION:
            log.warning("steps: %.2g of the last frame is rainy, too little to evolve; "
                        "returning a dry forecast", rain_fraction)
            return np.zeros((members, n_out, h, w))
        motion = self.motion_of(past, motion)
        db = rain_to_flow_input(past, threshold=RAIN_THRESHOLD_MM_H)
        levels = self.n_cascade_levels or default_cascade_levels(h, w)
        # pysteps prints a long report per call; keep it out of the CLI's output
        with contextlib.redirect_stdout(io.StringIO()):
            ens = nowcasts.get_method("steps")(
                db[-(self.ar_order + 1):],
                motion,
                n_out,
                n_ens_members=members,
                n_cascade_levels=levels,
                precip_thr=_DB_THRESHOLD,
                kmperpixel=self.kmperpixel,
                timestep=self.timestep,
                ar_order=self.ar_order,
                noise_method=self.noise_method,
                vel_pert_method=self.vel_pert_method,
                mask_method=self.mask_method,
                probmatching_method=self.probmatching_method,
                seed=seed,
                num_workers=self.num_workers,
                fft_method=self.fft_method,
            )
        rain, _ = transformation.dB_transform(
            np.asarray(ens, dtype=np.float64), metadata={"transform": "dB"}, threshold=_DB_THRESHOLD,
            inverse=True,
        )
        return np.nan_to_num(rain, nan=0.0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": "pysteps STEPS ensemble in dB space",
            "kmperpixel": self.kmperpixel,
            "timestep_minutes": self.timestep,
            "n_cascade_levels": self.n_cascade_levels or "auto (from frame size)",
            "ar_order": self.ar_order,
            "noise_method": self.noise_method,
            "vel_pert_method": self.vel_pert_method,
            "mask_method": self.mask_method,
            "probmatching_method": self.probmatching_method,
            "motion_method": self.motion_method,
            "rain_threshold_mm_h": RAIN_THRESHOLD_MM_H,
        }
