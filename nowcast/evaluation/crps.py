"""Continuous ranked probability score of an ensemble, per lead time, in mm/h.

For M members x_1..x_M and observation y (the empirical CDF of the members, i.e. the standard,
not the "fair", estimator; the same value pysteps.verification.probscores.CRPS computes with
Hersbach's decomposition)::

    CRPS = 1/M sum_i |x_i - y|  -  1/(2 M^2) sum_i sum_j |x_i - x_j|

A deterministic forecast (M = 1) gives the absolute error. Averaged over covered pixels of every
window (pooled sums), separately per lead time.
"""

from __future__ import annotations

import torch

from nowcast.evaluation.continuous import _PooledMean
from nowcast.evaluation.inputs import check_ensemble, check_fields


def crps_ensemble(ensemble: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pointwise CRPS: ensemble (B, M, ...) and target (B, ...) -> (B, ...), same units as the input.

    Uses sum_ij |x_i - x_j| = 2 sum_k (2k - M - 1) x_(k) over the sorted members (k = 1..M).
    """
    m = ensemble.shape[1]
    abs_err = (ensemble - target[:, None]).abs().mean(dim=1)
    ranks = torch.arange(1, m + 1, device=ensemble.device, dtype=ensemble.dtype)
    shape = (1, m) + (1,) * (ensemble.ndim - 2)
    spread = (ensemble.sort(dim=1).values * (2 * ranks - m - 1).reshape(shape)).sum(dim=1) * 2
    return abs_err - spread / (2 * m * m)


class CRPS(_PooledMean):
    """``update(ensemble (B,M,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T,) float64 mean CRPS in mm/h.
    """

    def update(self, ensemble: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        check_ensemble(ensemble, target)
        members = ensemble.double()
        _, ob, mask = check_fields(members[:, 0], target, mask, self.n_lead)
        if not torch.isfinite(members[mask[:, None].expand_as(members)]).all():
            raise ValueError("forecast ensemble has non-finite values in covered (mask=True) pixels")
        members = torch.where(mask[:, None], members, torch.zeros((), dtype=members.dtype))
        self._accumulate(crps_ensemble(members, ob.double()), mask)
