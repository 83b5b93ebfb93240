"""Conditional diffusion nowcaster: denoiser network, diffusion wrapper, forecaster."""

from nowcast.models.diffusion.denoiser import SpatioTemporalTransformer
from nowcast.models.diffusion.forecaster import DiffusionForecaster
from nowcast.models.diffusion.wrapper import ConditionalDiffusion

__all__ = ["ConditionalDiffusion", "DiffusionForecaster", "SpatioTemporalTransformer"]
