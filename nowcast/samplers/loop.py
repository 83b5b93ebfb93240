"""The one sampling loop shared by every sampler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nowcast.samplers.base import Sampler

ModelFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    sampler: Sampler,
    x_T: Tensor,
    n_steps: int,
    generator: torch.Generator | None = None,
    progress: bool | None = False,
) -> Tensor:
    """Run the reverse process from ``x_T`` (B, ...) over ``n_steps`` and return the clean sample.

    ``model_fn(x_t, t)`` takes the current sample and a LongTensor ``(B,)`` of training-step
    indices and returns the model output (of the sampler's ``prediction_type``), shaped like
    ``x_t``. ``model_fn`` is called exactly ``n_steps`` times. ``progress`` shows a tqdm bar on stderr
    (None: only when stderr is a terminal).
    """
    sampler.set_timesteps(n_steps)
    steps = sampler.timesteps.tolist()
    if progress or progress is None:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{type(sampler).__name__} ({n_steps} steps)", leave=False,
                     disable=None if progress is None else False)
    x = x_T
    for t in steps:
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = model_fn(x, t_batch)
        if out.shape != x.shape:
            raise ValueError(f"model output shape {tuple(out.shape)} differs from sample {tuple(x.shape)}")
        x = sampler.step(out, t, x, generator=generator)
    return x
