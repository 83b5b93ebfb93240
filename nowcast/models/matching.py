"""Probability matching of forecast members to the rain distribution of the latest observation.

STEPS does the same to every member at every lead time (pysteps ``nowcasts.steps`` with
``probmatching_method="cdf"``): the forecast keeps its pattern (the rank order of its pixels) and
takes the values of the last radar frame, so the rain area and intensities neither dry out nor
inflate with lead time. For the coarse-residual diffusion model this undoes a systematic loss of
light rain: its correction lives on an 8 km grid and, spread uniformly over a cell, new rain that
covers part of the cell stays below 1 mm/h everywhere (nowcast/checkpoints/README.md).

Unlike ``pysteps.postprocessing.probmatching.nonparam_match_empirical_cdf``, which keeps the
member's dry pixels dry (it corrects intensities, not a too-small rain area), the whole
distribution is matched here, the rain area included; ties among a member's dry pixels are broken by
a second field (the extrapolation), so rain that has to be added goes where the extrapolation has it.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: tie-break weight of the second field: far below any rain-rate difference that matters
TIE_BREAK = 1e-4


def match_to_observation(members: Tensor, observed: Tensor, tie_break: Tensor | None = None) -> Tensor:
    """Give every member field the values of ``observed`` in the member's own rank order.

    Args:
        members: (B, M, T, H, W) mm/h.
        observed: (B, H, W) mm/h, the field whose distribution every member and lead time takes.
        tie_break: (B, T, H, W) mm/h or None; orders pixels of equal member value (larger first
            to get rain).

    Returns:
        (B, M, T, H, W) mm/h: per member and lead time a permutation of ``observed``'s values.
    """
    b, m, t, h, w = members.shape
    if observed.shape != (b, h, w):
        raise ValueError(f"observed must be {(b, h, w)}, got {tuple(observed.shape)}")
    key = members.float()
    if tie_break is not None:
        key = key + TIE_BREAK * tie_break.float()[:, None]
    key = key.reshape(b, m * t, h * w)
    values = observed.float().reshape(b, 1, h * w).sort(dim=-1).values.expand(b, m * t, h * w)
    out = torch.empty_like(key).scatter_(-1, key.argsort(dim=-1), values)
    return out.reshape(b, m, t, h, w).to(members.dtype)
