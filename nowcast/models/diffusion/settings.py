"""What a diffusion nowcaster is built with: its network and objective, typed (:class:`DiffusionNetwork`).

These are the ``args`` of the diffusion model's spec in training (``nowcast train``, see
:mod:`nowcast.training.specs`) and what its checkpoint stores as ``hparams``; a forecaster
rebuilds the network from those ``hparams`` (:mod:`nowcast.models.diffusion.networks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: checkpoint ``hparams`` keys that configure the diffusion wrapper; the others build the denoiser
WRAPPER_KEYS = ("prediction_type", "residual", "n_train_steps", "loss_weighting", "min_snr_gamma", "coarsen",
                "residual_scale", "lagrangian_past")


@dataclass
class DiffusionNetwork:
    """The denoiser and its diffusion objective.

    Attributes:
        architecture: "transformer" (patch Transformer,
            :class:`~nowcast.models.diffusion.denoiser.SpatioTemporalTransformer`) or "hybrid"
            (convolutional U-shape around space-time attention on a coarse token grid,
            :class:`~nowcast.models.diffusion.hybrid.SpaceTimeUNet`).
        channels: convolution widths per resolution of "hybrid" (one halving per extra entry).
        fold: "hybrid" folds each ``fold x fold`` block of pixels into channels before its first
            convolution (space-to-depth): a full-resolution residual at a coarse grid's cost.
        dim, depth, heads, mlp_ratio: the Transformer's width, blocks, heads, MLP expansion.
        patch: patch size (px of the diffusion grid) of "transformer".
        prediction_type: the network's target, "v", "epsilon" or "x0".
        residual: diffuse ``future - extrapolation`` instead of the future.
        use_extrapolation: condition the denoiser on the extrapolation frames.
        transform: the rain transform defining model space: a name ("dbz", "log") or its
            arguments, e.g. ``{"name": "log", "eps": 1.0}`` (log(R + 1)).
        n_train_steps: noise-schedule length (cosine).
        coarsen: diffuse the residual on a grid this many times coarser (block means).
        residual_scale: the diffused residual is divided by this (about its standard deviation).
        loss_weighting: "none", "min_snr" or "v_min_snr" (see
            :class:`~nowcast.models.diffusion.wrapper.ConditionalDiffusion`).
        lagrangian_past: condition on the past frames advected along the motion to the last
            one's time (growth and decay as a per-pixel difference) instead of as observed.
    """

    architecture: str = "transformer"
    channels: list[int] = field(default_factory=lambda: [32, 64, 96])
    fold: int = 1
    dim: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    patch: int = 8
    prediction_type: str = "v"
    residual: bool = True
    use_extrapolation: bool = True
    transform: str | dict[str, Any] = "dbz"
    n_train_steps: int = 1000
    coarsen: int = 1
    residual_scale: float = 1.0
    loss_weighting: str = "none"
    lagrangian_past: bool = False

    def denoiser_hparams(self, n_in: int, n_out: int) -> dict[str, Any]:
        """The denoiser's constructor arguments plus ``architecture``, as a checkpoint stores them
        (a "transformer" checkpoint has no ``architecture`` key, and the patch-only keys stay out of
        a "hybrid" one, so files written before these settings were typed still match)."""
        hp: dict[str, Any] = dict(n_in=n_in, n_out=n_out, extrapolation=self.use_extrapolation, dim=self.dim,
                                  depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio)
        if self.architecture == "transformer":
            if self.fold != 1:
                raise ValueError(f"fold={self.fold} is a setting of the 'hybrid' architecture only")
            hp["patch"] = self.patch
        else:
            hp.update(architecture=self.architecture, channels=list(self.channels))
            if self.fold != 1:
                hp["fold"] = self.fold
        return hp

    def wrapper_hparams(self) -> dict[str, Any]:
        """The diffusion wrapper's arguments (:data:`WRAPPER_KEYS`) as a checkpoint stores them
        (``coarsen`` and ``residual_scale`` only when not 1, ``lagrangian_past`` only when set:
        absent means the default)."""
        hp: dict[str, Any] = dict(prediction_type=self.prediction_type, residual=self.residual,
                                  n_train_steps=self.n_train_steps, loss_weighting=self.loss_weighting)
        if self.coarsen != 1 or self.residual_scale != 1.0:
            hp.update(coarsen=self.coarsen, residual_scale=self.residual_scale)
        if self.lagrangian_past:
            hp["lagrangian_past"] = True
        return hp
