"""Differentiable semi-Lagrangian extrapolation in torch (GPU-friendly twin of pysteps').

:func:`advect` follows the scheme of ``pysteps.extrapolation.semilagrangian.extrapolate``
(Germann and Zawadzki 2002) with its defaults ``n_iter=1``, ``interp_order=1``: for every
output step the backward trajectory of each pixel is extended by one step with the midpoint
rule, the motion being read bilinearly at the trajectory's position (nearest value beyond the
frame edge), and the field is read bilinearly at the trajectory's end, with 0 outside the frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _sample(field: torch.Tensor, x: torch.Tensor, y: torch.Tensor, padding: str) -> torch.Tensor:
    """Bilinear read of ``field`` (B, C, H, W) at pixel coordinates ``x``, ``y`` (B, H, W)."""
    h, w = field.shape[-2:]
    # align_corners=True maps -1 / +1 to the centres of the first / last pixel, so pixel
    # index i lands on 2 i / (n - 1) - 1, like scipy.ndimage.map_coordinates
    gx = 2.0 * x / max(w - 1, 1) - 1.0
    gy = 2.0 * y / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(field, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def advect(field: torch.Tensor, motion: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Extrapolate ``field`` along a constant ``motion`` for ``n_steps`` steps.

    Args:
        field: (B, H, W) any quantity (e.g. mm/h); must be finite.
        motion: (B, 2, H, W) pixels per time step, [0] = u (+x, columns), [1] = v (+y, rows).
        n_steps: number of output steps (>= 1).

    Returns:
        (B, n_steps, H, W) in the units of ``field``, step k holding the field advected
        k + 1 steps ahead; values advected in from outside the frame are 0.
    """
    if field.ndim != 3 or motion.ndim != 4 or motion.shape[1] != 2:
        raise ValueError(f"need field (B, H, W) and motion (B, 2, H, W), got {tuple(field.shape)} "
                         f"and {tuple(motion.shape)}")
    if motion.shape[0] != field.shape[0] or motion.shape[-2:] != field.shape[-2:]:
        raise ValueError(f"field {tuple(field.shape)} and motion {tuple(motion.shape)} do not match")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    b, h, w = field.shape
    dtype = torch.promote_types(field.dtype, torch.float32)
    field = field.to(dtype)[:, None]
    motion = motion.to(dtype)
    rows, cols = torch.meshgrid(torch.arange(h, device=field.device, dtype=dtype),
                                torch.arange(w, device=field.device, dtype=dtype), indexing="ij")
    x0, y0 = cols.expand(b, h, w), rows.expand(b, h, w)
    disp = torch.zeros(b, 2, h, w, device=field.device, dtype=dtype)
    inc = motion.clone()  # motion over the last step, read along the trajectory
    out = []
    for _ in range(n_steps):
        mid = disp - inc / 2.0
        inc = _sample(motion, x0 + mid[:, 0], y0 + mid[:, 1], "border")
        disp = disp - inc
        inc = _sample(motion, x0 + disp[:, 0], y0 + disp[:, 1], "border")
        x, y = x0 + disp[:, 0], y0 + disp[:, 1]
        # like map_coordinates(mode="constant"): a trajectory ending outside the frame reads 0
        # (grid_sample alone would blend the edge pixel with 0 over the outer half pixel)
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        out.append(_sample(field, x, y, "zeros")[:, 0] * inside)
    return torch.stack(out, dim=1)
