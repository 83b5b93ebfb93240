"""Motion fields from past radar frames, via pysteps optical flow.

``estimate_motion`` is the single place where the package estimates advection: the
pysteps extrapolation and STEPS baselines, the diffusion model's extrapolation
conditioning and the training-time motion cache all call it, so they see the same flow.
"""

from __future__ import annotations

import numpy as np

#: dB value given to dry or uncovered pixels before optical flow (pysteps convention)
_DB_ZERO = -15.0


def rain_to_flow_input(rain: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """(T, H, W) mm/h (NaN allowed) -> dB-transformed field with dry/NaN set to -15 dB."""
    from pysteps.utils import transformation

    r = np.nan_to_num(np.asarray(rain, dtype=np.float64), nan=0.0)
    meta = {"threshold": threshold, "zerovalue": 0.0, "transform": None}
    db, _ = transformation.dB_transform(r, metadata=meta, threshold=threshold, zerovalue=_DB_ZERO)
    return np.nan_to_num(db, nan=_DB_ZERO)


def estimate_motion(past: np.ndarray, method: str = "LK") -> np.ndarray:
    """Advection field of a sequence of frames.

    Args:
        past: (T, H, W) rain rate in mm/h, T >= 2, oldest first; NaN = no coverage.
        method: a ``pysteps.motion`` method name ("LK", "DARTS", "proesmans", ...).

    Returns:
        (2, H, W) float32 motion in pixels per time step: [0] = u (+x, columns),
        [1] = v (+y, rows), the layout pysteps' extrapolation expects. All zeros when
        the frames hold no rain to track.
    """
    from pysteps import motion

    past = np.asarray(past)
    if past.ndim != 3 or past.shape[0] < 2:
        raise ValueError(f"need (T >= 2, H, W) frames, got {past.shape}")
    field = rain_to_flow_input(past)
    if not (field > _DB_ZERO).any():
        return np.zeros((2, *past.shape[1:]), dtype=np.float32)
    flow = motion.get_method(method)(field, verbose=False) if method.upper() == "LK" else \
        motion.get_method(method)(field)
    return np.nan_to_num(np.asarray(flow, dtype=np.float32))
