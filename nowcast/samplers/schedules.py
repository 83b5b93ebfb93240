"""Discrete variance-preserving noise schedules (DDPM, Ho et al. 2020).

Index convention: training step ``t`` in ``0..n_train_steps-1``; ``alphas_cumprod[t]`` is
``prod_{i<=t} (1 - betas[i])`` so that ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
Step ``-1`` denotes the clean data (``abar = 1``). Coefficients are kept in float64 and cast
to the dtype/device of the tensor they multiply. Every ``t`` argument is an int, a 0-d tensor
or a LongTensor ``(B,)`` broadcast over the trailing dimensions of the data ``(B, ...)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v", "x0")

TimeIndex = int | Tensor


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")


class NoiseSchedule:
    """``betas`` (n,) in (0, 1); derived ``alphas_cumprod`` (n,), float64."""

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.n_train_steps = int(betas.numel())

    # --- constructors -------------------------------------------------------------------
    @classmethod
    def cosine(cls, n_train_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal (2021): ``abar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2)``, betas <= max_beta."""
        steps = torch.arange(n_train_steps + 1, dtype=torch.float64) / n_train_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1.0 - f[1:] / f[:-1]).clamp(min=1e-8, max=max_beta)
        return cls(betas)

    @classmethod
    def linear(
        cls, n_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2
    ) -> NoiseSchedule:
        """Ho et al. (2020): betas linear from ``beta_start`` to ``beta_end``."""
        return cls(torch.linspace(beta_start, beta_end, n_train_steps, dtype=torch.float64))

    # --- device -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: str | torch.device) -> NoiseSchedule:
        self.betas = self.betas.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    def __repr__(self) -> str:
        return f"NoiseSchedule(n_train_steps={self.n_train_steps})"

    # --- coefficient lookup -------------------------------------------------------------
    def alpha_bar(self, t: TimeIndex, like: Tensor) -> Tensor:
        """``abar_t`` broadcast to ``like`` (shape (B, 1, ...), dtype/device of ``like``); t=-1 -> 1."""
        t = torch.as_tensor(t, dtype=torch.long, device=self.device)
        if bool(((t < -1) | (t >= self.n_train_steps)).any()):
            raise ValueError(f"time index out of range -1..{self.n_train_steps - 1}: {t.tolist()}")
        abar = torch.where(t < 0, torch.ones((), dtype=torch.float64, device=self.device),
                           self.alphas_cumprod[t.clamp(min=0)])
        if abar.ndim == 1:
            if like.ndim == 0 or abar.shape[0] not in (1, like.shape[0]):
                raise ValueError(f"t has {abar.shape[0]} entries but data batch is {tuple(like.shape)}")
            abar = abar.reshape(-1, *([1] * (like.ndim - 1)))
        elif abar.ndim > 1:
            raise ValueError(f"t must be an int or a 1-D tensor, got shape {tuple(t.shape)}")
        return abar.to(device=like.device, dtype=like.dtype)

    def alpha_sigma(self, t: TimeIndex, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))`` broadcast to ``like``."""
        abar = self.alpha_bar(t, like)
        return abar.sqrt(), (1.0 - abar).clamp(min=0).sqrt()

    # --- forward process and parametrisations -------------------------------------------
    def q_sample(self, x0: Tensor, t: TimeIndex, noise: Tensor) -> Tensor:
        """Draw ``x_t ~ q(x_t | x0)`` with the given standard-normal ``noise`` (same shape as x0)."""
        a, s = self.alpha_sigma(t, x0)
        return a * x0 + s * noise

    def q_step(self, x_s: Tensor, s: TimeIndex, t: TimeIndex, noise: Tensor) -> Tensor:
        """Draw ``x_t ~ q(x_t | x_s)`` for ``s < t`` (s = -1: ``x_s`` is the clean data):
        ``x_t = sqrt(abar_t / abar_s) x_s + sqrt(1 - abar_t / abar_s) noise``."""
        ratio = self.alpha_bar(t, x_s) / self.alpha_bar(s, x_s)
        return ratio.sqrt() * x_s + (1.0 - ratio).clamp(min=0).sqrt() * noise

    def v_target(self, x0: Tensor, noise: Tensor, t: TimeIndex) -> Tensor:
        """Velocity ``v = sqrt(abar) eps - sqrt(1-abar) x0`` (Salimans & Ho 2022)."""
        a, s = self.alpha_sigma(t, x0)
        return a * noise - s * x0

    def to_x0(self, output: Tensor, x_t: Tensor, t: TimeIndex, prediction_type: str) -> Tensor:
        """Clean-data estimate from a network output of the given ``prediction_type``."""
        _check_prediction_type(prediction_type)
        if prediction_type == "x0":
            return output
        a, s = self.alpha_sigma(t, x_t)
        if prediction_type == "v":
            return a * x_t - s * output
        return (x_t - s * output) / a

    def to_eps(self, output: Tensor, x_t: Tensor, t: TimeIndex, prediction_type: str) -> Tensor:
        """Noise estimate from a network output of the given ``prediction_type``."""
        _check_prediction_type(prediction_type)
        if prediction_type == "epsilon":
            return output
        a, s = self.alpha_sigma(t, x_t)
        if prediction_type == "v":
            return s * x_t + a * output
        return (x_t - a * output) / s.clamp(min=1e-12)

    def posterior(self, x0: Tensor, x_t: Tensor, t: TimeIndex, s: TimeIndex) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``q(x_s | x_t, x0)`` for any ``s < t`` (s = -1: the clean data).

        With ``abar_{t|s} = abar_t / abar_s``:
        variance = (1 - abar_s)(1 - abar_{t|s}) / (1 - abar_t),
        mean = [sqrt(abar_s)(1 - abar_{t|s}) x0 + sqrt(abar_{t|s})(1 - abar_s) x_t] / (1 - abar_t).
        Valid for jumps of any size (DDGAN's large steps); ``s = t - 1`` is DDPM's posterior.
        Both results have the shape of ``x_t`` (the variance as an expanded view).
        """
        t_ = torch.as_tensor(t, device=self.device)
        s_ = torch.as_tensor(s, device=self.device)
        if bool((s_ >= t_).any()):
            raise ValueError("posterior needs s < t")
        abar_t = self.alpha_bar(t, x_t)
        abar_s = self.alpha_bar(s, x_t)
        abar_ts = abar_t / abar_s
        denom = 1.0 - abar_t
        mean = (abar_s.sqrt() * (1.0 - abar_ts) * x0 + abar_ts.sqrt() * (1.0 - abar_s) * x_t) / denom
        variance = ((1.0 - abar_s) * (1.0 - abar_ts) / denom).clamp(min=0)
        return mean, variance.expand_as(mean)
