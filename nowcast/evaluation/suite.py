"""All verification scores of the benchmark in one streaming object, with a JSON-friendly result.

``ScoreSuite.update(forecast_ens (B,M,T,H,W) mm/h, target (B,T,H,W) mm/h, mask (B,H,W) bool)``
feeds every score; ``compute()`` returns nested dicts of plain floats (NaN and +-inf become
None), per metric ``{"per_lead": [T values], "mean": average over lead times}`` (the mean skips
undefined lead times; None if all are undefined).

Which field each score sees (deterministic models, M = 1, see the same field everywhere):

- ``point`` ("mean", default, "pm_mean" or "member0"): the ensemble mean in mm/h, the
  probability-matched mean (:func:`~nowcast.evaluation.inputs.probability_matched_mean`) or member 0, for MSE,
  PSNR, SSIM, CSI/POD/FAR/bias (plain and max-pooled) and FSS; an ensemble also gets CSI/POD/FAR/bias
  of both the plain and the probability-matched mean under ``"categorical_by_point"`` (the plain mean
  smooths intense rain away and costs CSI at high thresholds);
- ``sample`` ("member0", default, or "mean"): one realistic member, or the mean, for the realism
  scores LPIPS, FID and the power spectra / RALSD (an ensemble mean is smooth by construction);
- CRPS uses every member, and so do the ensemble scores of ensembles (M > 1): rank histogram,
  reliability, ROC, Brier score and spread–skill (:mod:`nowcast.evaluation.ensemble`, under
  ``"ensemble"``; None for a deterministic model, whose CRPS is its MAE).

Perceptual scores (LPIPS, FID) need offline weights (see :mod:`nowcast.evaluation.perceptual`):
``perceptual=True`` requires them (MissingWeightsError otherwise), ``False`` skips them, "auto"
uses them when every file is there. Skipped scores are listed under ``"skipped"`` with the
reason under ``"skipped_reason"``. ``"fid"`` holds ``mean`` = the FID of all lead times' frames
pooled (not a mean of per-lead FIDs) and ``per_lead`` when ``fid_per_lead``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from nowcast.evaluation.categorical import CategoricalScores
from nowcast.evaluation.continuous import MSE, PSNR, SSIM
from nowcast.evaluation.crps import CRPS
from nowcast.evaluation.ensemble import EnsembleScores
from nowcast.evaluation.fss import FSS
from nowcast.evaluation.inputs import Reduction, check_ensemble, reduce_ensemble, zero_uncovered
from nowcast.evaluation.perceptual import FID, LPIPS, perceptual_weights_missing
from nowcast.evaluation.spectra import RAPSD

PERCEPTUAL = ("lpips", "fid")
#: exceedance thresholds (mm/h) of the reliability diagram, ROC and Brier score
ENSEMBLE_THRESHOLDS = (1.0, 4.0)
#: point forecasts whose categorical scores an ensemble always gets (``"categorical_by_point"``)
POINT_VARIANTS = ("mean", "pm_mean")


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _series(values: torch.Tensor) -> dict[str, Any]:
    """(T,) tensor -> {"per_lead": [...], "mean": mean over finite values or None} (a 0-d tensor is
    one lead time: torchmetrics squeezes a one-element result)."""
    vals = [float(v) for v in values.detach().cpu().double().reshape(-1)]
    finite = [v for v in vals if math.isfinite(v)]
    return {"per_lead": [_num(v) for v in vals], "mean": sum(finite) / len(finite) if finite else None}


def _key(x: float) -> str:
    return str(float(x))


class ScoreSuite(torch.nn.Module):
    """Every benchmark score, streaming, per lead time. ``.to(device)`` moves all states/networks.

    Args:
        n_lead: lead times T of every update.
        thresholds: mm/h thresholds of CSI/POD/FAR/bias.
        pools: max-pooling sizes (pixels) for the extra CSI tables ``csi_pool<k>``.
        fss_thresholds, fss_scales: FSS thresholds (mm/h) and window sizes (pixels).
        perceptual: True, False or "auto" (see the module docstring).
        weights_dir: folder of the offline LPIPS/FID weights (default: nowcast.types.weights_dir()).
        point, sample: ensemble reductions (see the module docstring).
        fid_per_lead: also FID per lead time (64 MB of state per lead time).
        pixel_size_km: grid spacing, for the spectra's frequency axis.
        ensemble: score ensembles (M > 1) with :class:`EnsembleScores` (needs pysteps).
    """

    def __init__(
        self,
        n_lead: int,
        thresholds: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        pools: Sequence[int] = (4, 16),
        fss_thresholds: Sequence[float] = (1.0, 4.0),
        fss_scales: Sequence[int] = (1, 4, 16),
        perceptual: bool | Literal["auto"] = "auto",
        weights_dir: str | Path | None = None,
        point: Reduction = "mean",
        sample: Reduction = "member0",
        fid_per_lead: bool = False,
        pixel_size_km: float = 2.0,
        ensemble: bool = True,
    ) -> None:
        super().__init__()
        if perceptual not in (True, False, "auto"):
            raise ValueError(f"perceptual must be True, False or 'auto', got {perceptual!r}")
        for name, how in (("point", point), ("sample", sample)):
            if how not in ("mean", "pm_mean", "member0"):
                raise ValueError(f"{name} must be 'mean', 'pm_mean' or 'member0', got {how!r}")
        self.n_lead, self.point, self.sample = int(n_lead), point, sample
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pools = tuple(int(p) for p in pools)
        self.categorical = CategoricalScores(n_lead, self.thresholds)
        # ensembles: CSI/POD/FAR/bias of both the plain and the probability-matched mean
        self.categorical_by_point = torch.nn.ModuleDict(
            {how: CategoricalScores(n_lead, self.thresholds) for how in POINT_VARIANTS})
        self.scored_ensemble = False
        self.pooled = torch.nn.ModuleList(
            CategoricalScores(n_lead, self.thresholds, pool=p) for p in self.pools
        )
        self.mse_mm_h = MSE(n_lead, "mm_h")
        self.mse_pixel = MSE(n_lead, "pixel")
        self.psnr = PSNR(n_lead)
        self.ssim = SSIM(n_lead)
        self.fss = FSS(n_lead, fss_thresholds, fss_scales)
        self.crps = CRPS(n_lead)
        self.rapsd = RAPSD(n_lead, pixel_size_km=pixel_size_km)
        self.score_ensembles = ensemble
        self.ensemble_skipped = None if ensemble else "disabled (ensemble=False)"
        if ensemble:
            try:
                import pysteps.verification  # noqa: F401
            except ImportError:
                self.score_ensembles, self.ensemble_skipped = False, "pysteps is not installed"
        self.ensemble: EnsembleScores | None = None  # built at the first update, which knows M
        self.skipped: list[str] = []
        self.skipped_reason = ""
        missing = perceptual_weights_missing(weights_dir) if perceptual == "auto" else []
        if perceptual is False or missing:
            self.skipped = list(PERCEPTUAL)
            self.skipped_reason = "; ".join(missing) if missing else "disabled (perceptual=False)"
            self.lpips = self.fid = None
        else:
            self.lpips = LPIPS(n_lead, weights_dir)
            self.fid = FID(n_lead, weights_dir, per_lead=fid_per_lead)

    def update(self, forecast_ens: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """forecast_ens (B, M, T, H, W) mm/h, target (B, T, H, W) mm/h, mask (B, H, W) bool."""
        check_ensemble(forecast_ens, target)
        forecast_ens = zero_uncovered(forecast_ens, mask)
        point = reduce_ensemble(forecast_ens, self.point)
        sample = reduce_ensemble(forecast_ens, self.sample)
        for metric in (self.categorical, *self.pooled, self.mse_mm_h, self.mse_pixel, self.psnr,
                       self.ssim, self.fss):
            metric.update(point, target, mask)
        self.crps.update(forecast_ens, target, mask)
        if forecast_ens.shape[1] > 1:
            self.scored_ensemble = True
            for how, metric in self.categorical_by_point.items():
                field = point if how == self.point else reduce_ensemble(forecast_ens, how)
                metric.update(field, target, mask)
        if self.score_ensembles and forecast_ens.shape[1] > 1:
            if self.ensemble is None:
                self.ensemble = EnsembleScores(self.n_lead, forecast_ens.shape[1], ENSEMBLE_THRESHOLDS)
            self.ensemble.update(forecast_ens, target, mask)
        for metric in (self.rapsd, self.lpips, self.fid):
            if metric is not None:
                metric.update(sample, target, mask)

    def window_sums(self) -> dict[str, torch.Tensor]:
        """Per-window sums of the latest :meth:`update`, first axis = its B windows, from which the
        report pools any set of windows (paired bootstrap intervals, :mod:`nowcast.evaluation.bootstrap`):

        - ``counts`` (B, T, K, 3) hits, misses, false alarms of the point forecast at each threshold,
          ``counts_pool<p>`` the same after max-pooling;
        - ``mse_mm_h``, ``mse_pixel``, ``ssim``, ``crps`` and, when scored, ``lpips``: (B, T, 2) the
          sum and the count each score averages;
        - ``fss`` (B, T, K_fss, S, 3) sums of S_f², S_f S_o, S_o².
        FID and the spectra are set-level scores with no per-window decomposition.
        """
        out = {"counts": self.categorical.window_counts}
        out.update({f"counts_pool{p}": m.window_counts for p, m in zip(self.pools, self.pooled, strict=True)})
        for name in ("mse_mm_h", "mse_pixel", "ssim", "crps", "lpips"):
            metric = getattr(self, name)
            if metric is not None:
                out[name] = torch.stack(metric.window_sums, dim=-1)
        out["fss"] = self.fss.window_sums
        return out

    def reset(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "_defaults"):  # torchmetrics Metrics
                module.reset()
        self.ensemble = None
        self.scored_ensemble = False

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_lead": self.n_lead, "point": self.point, "sample": self.sample}
        tables = [("", self.categorical.compute())]
        tables += [(f"_pool{p}", m.compute()) for p, m in zip(self.pools, self.pooled, strict=True)]
        for suffix, scores in tables:
            names = ("csi", "pod", "far", "bias") if not suffix else ("csi",)
            for name in names:
                out[name + suffix] = {
                    _key(t): _series(scores[name][:, j]) for j, t in enumerate(self.thresholds)
                }
        out["categorical_by_point"] = {
            how: {name: {_key(t): _series(scores[name][:, j]) for j, t in enumerate(self.thresholds)}
                  for name in ("csi", "pod", "far", "bias")}
            for how, scores in ((h, m.compute()) for h, m in self.categorical_by_point.items())
        } if self.scored_ensemble else None
        for name in ("mse_mm_h", "mse_pixel", "psnr", "ssim", "crps"):
            out[name] = _series(getattr(self, name).compute())
        fss = self.fss.compute()
        out["fss"] = {
            _key(t): {str(s): _series(fss[:, i, j]) for j, s in enumerate(self.fss.scales)}
            for i, t in enumerate(self.fss.thresholds)
        }
        spec = self.rapsd.compute()
        freq = [float(f) for f in spec["freq"]]
        out["rapsd"] = {
            "freq_per_km": freq,
            "wavelength_km": [1.0 / f if f > 0 else None for f in freq],
            "forecast": [[_num(v) for v in row] for row in spec["forecast"].tolist()],
            "observed": [[_num(v) for v in row] for row in spec["observed"].tolist()],
        }
        out["ralsd"] = _series(spec["ralsd"])
        if self.lpips is not None and self.fid is not None:
            out["lpips"] = _series(self.lpips.compute())
            fid = self.fid.compute()
            out["fid"] = {
                "per_lead": _series(fid["per_lead"])["per_lead"] if "per_lead" in fid else None,
                "mean": _num(float(fid["all_leads"])),
            }
        out["ensemble"] = self.ensemble.compute() if self.ensemble is not None else None
        out["ensemble_skipped"] = self.ensemble_skipped
        out["skipped"] = list(self.skipped)
        out["skipped_reason"] = self.skipped_reason
        return out
