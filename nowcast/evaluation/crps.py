"""Continuous ranked probability score of an ensemble, per lead time, in mm/h.

For M members x_1..x_M and observation y (the empirical CDF of the members, i.e. the standard,
not the "fair", estimator; pysteps.verification.probscores.CRPS computes it with Hersbach's
decomposition, whose strict inequalities lose ties such as many members at 0 mm/h)::

    CRPS = 1/M sum_i |x_i - y|  -  1/(2 M^2) sum_i sum_j |x_i - x_j|

A deterministic forecast (M = 1) gives the absolute error. Averaged over covered pixels of every
window (pooled sums), separately per lead time. ``fair=True`` divides the spread term by
2 M (M - 1) instead (Ferro 2014): an unbiased estimate of the CRPS of the distribution the members
are drawn from, the form a generator trained with this score needs (``nowcast.training.adversarial_task``).
With ``fair=True, size=K`` the spread term is multiplied by 1 - 1/K: an unbiased estimate of the
standard CRPS that an ensemble of K members drawn from the same distribution scores (the score of
an 8-member forecast is 1/(2 * 8) E|X - X'| worse than its distribution's: a generator trained
for the distribution spreads its members more than is best for the ensemble it will issue).
"""

from __future__ import annotations

import torch

from nowcast.evaluation.continuous import _PooledMean
from nowcast.evaluation.inputs import check_ensemble, check_fields

#: ensembles up to this size sum the member spread over pairs, larger ones sort (see crps_ensemble)
PAIRWISE_UP_TO = 16


def crps_ensemble(ensemble: torch.Tensor, target: torch.Tensor, fair: bool = False,
                  size: int | None = None) -> torch.Tensor:
    """Pointwise CRPS: ensemble (B, M, ...) and target (B, ...) -> (B, ...), same units as the input
    (``fair``: the fair estimator, M >= 2, of the members' distribution or, with ``size``, of a
    ``size``-member ensemble drawn from it; see the module docstring).

    The member spread sum_ij |x_i - x_j| is summed over the M (M - 1) / 2 pairs for small ensembles
    (8 members: 28 vectorised differences, ten times faster than a sort along the member axis on
    CPU), and as 2 sum_k (2k - M - 1) x_(k) over the sorted members (k = 1..M) for large ones.
    """
    m = ensemble.shape[1]
    abs_err = (ensemble - target[:, None]).abs().mean(dim=1)
    if m <= PAIRWISE_UP_TO:
        spread = torch.zeros_like(abs_err)
        for i in range(m - 1):
            spread += (ensemble[:, i:i + 1] - ensemble[:, i + 1:]).abs().sum(dim=1)
        spread = spread * 2
    else:
        ranks = torch.arange(1, m + 1, device=ensemble.device, dtype=ensemble.dtype)
        shape = (1, m) + (1,) * (ensemble.ndim - 2)
        spread = (ensemble.sort(dim=1).values * (2 * ranks - m - 1).reshape(shape)).sum(dim=1) * 2
    if fair and m < 2:
        raise ValueError("the fair CRPS needs at least 2 members")
    if size is not None and (not fair or size < 1):
        raise ValueError(f"size needs fair=True and at least 1 member, got fair={fair}, size={size}")
    if not fair:
        return abs_err - spread / (2 * m * m)
    return abs_err - spread * (1.0 - 1.0 / size if size else 1.0) / (2 * m * (m - 1))


class CRPS(_PooledMean):
    """``update(ensemble (B,M,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``;
    ``compute()`` -> (T,) float64 mean CRPS in mm/h.
    """

    def update(self, ensemble: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        check_ensemble(ensemble, target)
        # pointwise in float32 (the sort dominates; 1e-7 relative is far below any score difference),
        # accumulated in float64
        members = ensemble.float()
        _, ob, mask = check_fields(members[:, 0], target, mask, self.n_lead)
        if not (torch.isfinite(members) | ~mask[:, None]).all():  # no boolean indexing: 15x faster
            raise ValueError("forecast ensemble has non-finite values in covered (mask=True) pixels")
        members = torch.where(mask[:, None], members, torch.zeros((), dtype=members.dtype))
        self._accumulate(crps_ensemble(members, ob.float()).double(), mask)
