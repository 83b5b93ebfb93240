"""Noise schedules and samplers; importing this package fills the ``SAMPLERS`` registry."""

from nowcast.samplers import adversarial, ddim, ddpm, dpm_solver  # noqa: F401  (registration)
from nowcast.samplers.base import SAMPLERS, CondModelFn, Sampler, spaced_timesteps
from nowcast.samplers.loop import sample
from nowcast.samplers.schedules import PREDICTION_TYPES, NoiseSchedule

__all__ = ["PREDICTION_TYPES", "SAMPLERS", "CondModelFn", "NoiseSchedule", "Sampler", "sample",
           "spaced_timesteps"]
