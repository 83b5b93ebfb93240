"""The sampler interface (as diffusers' schedulers): ``set_timesteps(n)`` then ``step(...)`` per step.

A sampler walks the reverse process over ``n`` of the schedule's training steps,
``self.timesteps`` (descending, always starting at ``n_train_steps - 1``), and after the last
one jumps to the clean sample (step index ``-1``). The sampling loop is written
once, in :mod:`nowcast.samplers.loop`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Generator, Tensor

from nowcast.registry import Registry
from nowcast.samplers.schedules import NoiseSchedule, _check_prediction_type

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")

#: a network as a sampler calls it at every reverse step: ``fn(x_t, t, cond, generator) -> output``
#: (shaped like ``x_t``); the torch generator seeds any noise the network draws itself
CondModelFn = Callable[[Tensor, Tensor, Tensor, "Generator | None"], Tensor]


TIMESTEP_SPACINGS = ("linspace", "trailing")


def spaced_timesteps(n_train_steps: int, n: int, spacing: str = "trailing") -> Tensor:
    """``n`` descending, evenly spaced training-step indices; the first is always ``n_train_steps - 1``
    (every sampler starts from pure noise, cf. Lin et al. 2024, "Common diffusion noise schedules
    and sample steps are flawed").

    - "trailing" (default): ``T - 1, T - 1 - T/n, ...``, the last one ``T/n - 1``: every step,
      including the final jump to the clean sample, spans ``T/n`` training steps (DDGAN's large
      steps). On the Gaussian toy problem (tests) DPM-Solver++(2M) is more accurate with it;
    - "linspace": ``T - 1 ... 0``; the last regular step lands on the nearly clean index 0, which
      makes the 2M extrapolation ratio tiny there and overshoots the variance at 10-20 steps.
    """
    if not 1 <= n <= n_train_steps:
        raise ValueError(f"number of sampling steps must be in 1..{n_train_steps}, got {n}")
    if spacing == "linspace":
        return torch.linspace(n_train_steps - 1, 0, n, dtype=torch.float64).round().long()
    if spacing == "trailing":
        steps = torch.arange(n, dtype=torch.float64) * (n_train_steps / n)
        return (torch.round(n_train_steps - steps) - 1).long()
    raise ValueError(f"unknown timestep spacing {spacing!r}; known: {', '.join(TIMESTEP_SPACINGS)}")


def randn_like(x: Tensor, generator: Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device then moved to ``x``'s."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Sampler(ABC):
    """Reverse-process sampler over a :class:`NoiseSchedule`.

    ``prediction_type`` ("epsilon", "v", "x0") says what the model output is; ``clip_x0``
    (optional) clamps the clean-data estimate to ``[-clip_x0, clip_x0]`` at every step;
    ``timestep_spacing`` is one of :data:`TIMESTEP_SPACINGS` (see :func:`spaced_timesteps`).
    """

    #: whether ``step`` draws noise (deterministic samplers ignore the generator)
    stochastic: bool = True
    #: one line for ``nowcast models``
    summary: str = ""
    #: whether the sampler brings a trained network of its own (a ``generator`` argument, restored
    #: from a checkpoint file by the model that uses the sampler) instead of calling the denoiser
    own_network: ClassVar[bool] = False

    def __init__(
        self, schedule: NoiseSchedule, prediction_type: str = "v", clip_x0: float | None = None,
        timestep_spacing: str = "trailing",
    ) -> None:
        _check_prediction_type(prediction_type)
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"unknown timestep spacing {timestep_spacing!r}; known: {TIMESTEP_SPACINGS}")
        self.timestep_spacing = timestep_spacing
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_x0 = clip_x0
        self.timesteps: Tensor = torch.empty(0, dtype=torch.long)
        self._next: dict[int, int] = {}

    def set_timesteps(self, n: int) -> None:
        """Choose ``n`` sampling steps (``self.timesteps``, descending) and reset multistep state."""
        self.timesteps = spaced_timesteps(self.schedule.n_train_steps, n, self.timestep_spacing)
        ts = self.timesteps.tolist()
        self._next = dict(zip(ts, ts[1:] + [-1], strict=True))
        self.reset()

    def reset(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Forget state carried between steps (multistep samplers override)."""

    def next_timestep(self, t: int) -> int:
        """The step after ``t`` in ``self.timesteps`` (-1 = the clean sample)."""
        if not self._next:
            raise RuntimeError("call set_timesteps(n) before step()")
        try:
            return self._next[int(t)]
        except KeyError:
            known = self.timesteps.tolist()
            raise ValueError(f"t={t} is not one of the sampler's timesteps {known}") from None

    def network(self, denoiser: CondModelFn) -> CondModelFn:
        """The function every reverse step calls: the trained ``denoiser``, unless the sampler owns
        a network of its own (see :attr:`own_network`)."""
        return denoiser

    def alpha_bar(self, t: int) -> float:
        """``abar_t`` as a float64 Python number (1.0 for t = -1)."""
        return 1.0 if t < 0 else float(self.schedule.alphas_cumprod[t])

    def predict_x0(self, model_output: Tensor, t: int, x: Tensor) -> Tensor:
        x0 = self.schedule.to_x0(model_output, x, t, self.prediction_type)
        return x0 if self.clip_x0 is None else x0.clamp(-self.clip_x0, self.clip_x0)

    @abstractmethod
    def step(self, model_output: Tensor, t: int, x: Tensor, generator: Generator | None = None) -> Tensor:
        """One reverse step from ``x`` at training step ``t`` to the next timestep (or the clean sample).

        ``model_output`` and ``x`` share a shape ``(B, ...)``; the result has that shape too.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prediction_type={self.prediction_type!r}, n={len(self.timesteps)})"
