"""Motion perturbations of ensemble members, drawn as STEPS draws them.

An extrapolation-based ensemble whose members all move with one motion field has no spread in
where the rain goes, only in how much of it there is; the error of the motion, which grows with
lead time, is then scored as a double penalty. STEPS perturbs every member's motion with the
method of Bowler, Pierce and Seed (2006, "BPS": a random velocity error parallel and perpendicular
to the motion, its size growing with lead time as fitted to radar data); pysteps implements it
(``pysteps.noise.motion.initialize_bps`` / ``generate_bps``) and its STEPS adds the perturbation
to the motion at every step. Here the perturbation is applied to a member after it is forecast:
member ``j`` at lead ``k`` is read at ``x - D_jk(x)``, ``D_jk`` being the sum of the velocity
perturbations of steps ``1..k`` (the displacement STEPS accumulates on top of the extrapolation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nowcast.models.advection import _sample


def bps_displacements(motion: Tensor, members: int, n_out: int, pixel_size_km: float, timestep_minutes: float,
                      generator: torch.Generator | None = None) -> Tensor:
    """Cumulative BPS displacement of every member and lead time (pysteps' default parameters).

    Args:
        motion: (B, 2, H, W) px per time step ([0] = +x, [1] = +y).
        members: ensemble members M.
        n_out: lead times T.
        pixel_size_km, timestep_minutes: the grid and time step the motion is expressed in.
        generator: seeds the random velocity errors (one draw per window and member).

    Returns:
        (B, M, T, 2, H, W) px, lead ``k`` holding the displacement accumulated over steps ``1..k+1``.
    """
    from pysteps.noise.motion import generate_bps, initialize_bps

    device = generator.device if generator is not None else "cpu"
    seeds = torch.randint(0, 2**31 - 1, (motion.shape[0], members), generator=generator, device=device)
    seeds = seeds.tolist()
    field = motion.detach().double().cpu().numpy()
    out = np.empty((motion.shape[0], members, n_out, *motion.shape[1:]), dtype=np.float32)
    for b, row in enumerate(seeds):
        for j, seed in enumerate(row):
            perturbator = initialize_bps(field[b], 1.0 / pixel_size_km, timestep_minutes,
                                         randstate=np.random.RandomState(seed))
            steps = [generate_bps(perturbator, (k + 1) * timestep_minutes) for k in range(n_out)]
            out[b, j] = np.cumsum(steps, axis=0)
    return torch.from_numpy(out).to(motion.device)


def displace(fields: Tensor, displacement: Tensor) -> Tensor:
    """Read every field at ``x - displacement(x)`` (bilinear, 0 beyond the frame).

    Args:
        fields: (B, M, T, H, W); displacement: (B, M, T, 2, H, W) px ([0] = +x, [1] = +y).

    Returns:
        (B, M, T, H, W).
    """
    b, m, t, h, w = fields.shape
    x, y = _read_at(displacement)
    inside = _inside(x, y, h, w)
    out = _sample(fields.reshape(b * m * t, 1, h, w).float(), x, y, "zeros")[:, 0] * inside
    return out.reshape(b, m, t, h, w).to(fields.dtype)


def read_inside_frame(displacement: Tensor) -> Tensor:
    """Where :func:`displace` reads inside the frame: (B, M, T, 2, H, W) px -> (B, M, T, H, W) bool
    (elsewhere it reads 0, which is missing data, not dry weather)."""
    b, m, t, _, h, w = displacement.shape
    return _inside(*_read_at(displacement), h, w).reshape(b, m, t, h, w)


def _read_at(displacement: Tensor) -> tuple[Tensor, Tensor]:
    """The pixel coordinates ``x - displacement(x)``: two (B * M * T, H, W) tensors (x, y)."""
    h, w = displacement.shape[-2:]
    axis = {"device": displacement.device, "dtype": torch.float32}
    rows, cols = torch.meshgrid(torch.arange(h, **axis), torch.arange(w, **axis), indexing="ij")
    d = displacement.reshape(-1, 2, h, w).float()
    return cols - d[:, 0], rows - d[:, 1]


def _inside(x: Tensor, y: Tensor, h: int, w: int) -> Tensor:
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
