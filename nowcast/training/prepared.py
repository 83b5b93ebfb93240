"""Precomputed diffusion inputs: the costly, weight-independent part of a training step, done once.

A training step of the residual diffusion model spends most of its CPU time before the network
runs: reading and cropping the window, extrapolating 12 frames along the motion at full
resolution and averaging to the diffusion grid (1.5 s for a batch of 16 128-px crops on 2 cores,
several times the network's own step). None of it depends on the weights, so
:class:`PreparedResiduals` computes :meth:`ConditionalDiffusion.diffusion_inputs` once per
training window on the whole field and serves random crops of the result, with the data
module's rain preference and augmentation. It has one item per training window, in the data
module's order, so the rain-weighted window sampler applies unchanged
(:meth:`NowcastDataModule.replace_dataset`). With ``full_resolution`` it also keeps what a
forecast at the full resolution is verified against: the extrapolation the sampled residual is
added to, the future and the coverage, at the full resolution (radar-mix's 393 training windows at
2 km: 2.7 GB in all, in float16).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nowcast.data.datamodule import NowcastDataModule
from nowcast.data.dataset import RadarWindowDataset, augment, choose_rainy_crop
from nowcast.models.diffusion.wrapper import COND, RESIDUAL, ConditionalDiffusion, motion_of
from nowcast.types import FUTURE, MASK, MOTION, PAST

log = logging.getLogger(__name__)

#: key of an item's time-reversed window (``time_reversal``)
REVERSED = "reversed"

#: keys of a ``full_resolution`` item beside the diffusion grid's: the extrapolation (n_out, H, W)
#: in model space and the coverage (H, W) at full resolution (the future is :data:`FUTURE`, mm/h)
EXTRAPOLATION, FULL_MASK = "extrapolation", "full_mask"


def prepared_inputs(diffusion: ConditionalDiffusion, past: Tensor, future: Tensor, mask: Tensor | None,
                    motion: Tensor | None, full_resolution: bool = False) -> dict[str, Tensor]:
    """A batch of windows -> its precomputed diffusion inputs (one extrapolation along the motion).

    Args:
        past: (B, n_in, H, W), future: (B, >= n_out, H, W) mm/h; mask: (B, H, W) bool coverage
        or None; motion: (B, 2, H, W) px per time step, or None (pysteps, CPU).
        full_resolution: also return the full-resolution fields a forecast is verified against.

    Returns:
        ``cond`` (B, C, h, w), ``residual`` (B, n_out, h, w) (before ``residual_scale``), ``mask``
        (B, h, w) bool and ``motion`` (B, 2, h, w) cells per step on the diffusion grid
        (:meth:`ConditionalDiffusion.diffusion_inputs`, :meth:`~ConditionalDiffusion.motion_on_grid`);
        with ``full_resolution`` also ``extrapolation`` (B, n_out, H, W) model space, ``future``
        (B, n_out, H, W) mm/h and ``full_mask`` (B, H, W) bool (no masks without ``mask``).
    """
    if full_resolution and not diffusion.residual:
        raise ValueError("full_resolution needs a residual model (the extrapolation it is added to)")
    motion = motion_of(past) if motion is None else motion
    cond, base = diffusion.prepare(past, motion)
    cond, residual, covered = diffusion.diffusion_inputs(past, future, mask, motion, prepared=(cond, base))
    out = {COND: cond, RESIDUAL: residual, MASK: covered, MOTION: diffusion.motion_on_grid(motion)}
    if full_resolution:
        out.update({EXTRAPOLATION: base, FUTURE: future[:, :diffusion.n_out], FULL_MASK: mask})
    return {key: x for key, x in out.items() if x is not None}


def padded_to(size: int, past: Tensor, future: Tensor, mask: Tensor, motion: Tensor
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A window on a grid smaller than ``size`` (a network whose composite is smaller than the
    training crop, e.g. BOM's 128 x 128 at 2 km), extended to at least ``size`` x ``size`` by
    pixels outside coverage (dry, ``mask`` False, no motion) below and to the right: the losses
    leave them out as they do any uncovered pixel. Shapes as :func:`prepared_inputs`'s, batch first."""
    pad_h, pad_w = max(0, size - past.shape[-2]), max(0, size - past.shape[-1])
    if not (pad_h or pad_w):
        return past, future, mask, motion
    pad = (0, pad_w, 0, pad_h)
    f = torch.nn.functional.pad
    return f(past, pad), f(future, pad), f(mask, pad, value=False), f(motion, pad)


def played_backwards(past: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
    """The window's frames in reverse order, split as the window was: (B, n_in, H, W) and
    (B, n_out, H, W) -> the last ``n_in`` frames latest first (the new past) and the rest, latest
    first (the new future)."""
    frames = torch.cat([past, future], dim=1).flip(1)
    return frames[:, :past.shape[1]], frames[:, past.shape[1]:]


def stored_fields(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """One window's prepared inputs (batch of one) as kept in memory: masks as they are, fields in float16."""
    return {key: x[0] if x.dtype == torch.bool else x[0].to(torch.float16) for key, x in inputs.items()}


class PreparedResiduals(Dataset):
    """Diffusion inputs of whole training windows on the diffusion grid, served as random crops.

    Args:
        windows: the full-field training windows (``crop_size=None``, with motion); a field
            smaller than ``crop_size`` is extended by uncovered pixels (:func:`padded_to`).
        diffusion: the model whose :meth:`~ConditionalDiffusion.diffusion_inputs` are stored
            (its transform, extrapolation and ``coarsen``; not its weights).
        crop_size: crop side in full-resolution pixels (a multiple of ``diffusion.coarsen``).
        augment: random flips / quarter turns of each crop.
        prefer_rain, min_wet_fraction, wet_threshold: as :class:`RadarWindowDataset`'s crops.
        full_resolution: also keep the full-resolution fields a forecast is verified against.
        time_reversal: also keep each window played backwards (its last ``n_in`` frames, latest
            first, as the past; the earlier frames, latest first, as the future; the motion
            estimated from that past, pysteps LK) and serve it in place of the window half the
            time: twice the events' growth and decay (each decay is also a growth) for a residual
            that would otherwise learn the few training events' tendencies.

    Items: ``cond`` (C, c, c) and ``residual`` (n_out, c, c) float32, ``mask`` (c, c) bool and
    ``motion`` (2, c, c) float32 in cells per time step (:meth:`ConditionalDiffusion.motion_on_grid`,
    its vectors turned with the crop), with ``c = crop_size / coarsen``; with ``full_resolution``
    also ``extrapolation`` (n_out, s, s) model space, ``future`` (n_out, s, s) mm/h float32 and
    ``full_mask`` (s, s) bool, the same crop at the full resolution (``s = crop_size``).
    """

    def __init__(self, windows: RadarWindowDataset, diffusion: ConditionalDiffusion, crop_size: int,
                 augment: bool = True, prefer_rain: bool = True, min_wet_fraction: float = 0.05,
                 wet_threshold: float = 0.5, full_resolution: bool = False,
                 time_reversal: bool = False) -> None:
        k = diffusion.coarsen
        if crop_size % k:
            raise ValueError(f"crop_size {crop_size} is not a multiple of coarsen={k}")
        self.windows = windows.windows
        self.crop, self.coarsen = crop_size // k, k
        self.augment, self.prefer_rain, self.min_wet_fraction = augment, prefer_rain, min_wet_fraction
        self.time_reversal = time_reversal
        self.items: list[dict[str, Tensor]] = []
        t0 = time.perf_counter()
        from tqdm.auto import tqdm

        with torch.no_grad():
            for i in tqdm(range(len(windows)), desc="precompute diffusion inputs", unit="window"):
                w = windows[i]
                past, future, mask, motion = padded_to(crop_size, w[PAST][None], w[FUTURE][None],
                                                       w[MASK][None], w[MOTION][None])
                inputs = prepared_inputs(diffusion, past, future, mask, motion, full_resolution)
                rain = torch.cat([past, future], dim=1)[0]
                wet = torch.nn.functional.avg_pool2d((rain >= wet_threshold).float().mean(0)[None], k)[0]
                item = {"wet": wet, **stored_fields(inputs)}
                if time_reversal:
                    past_r, future_r = played_backwards(past, future[:, :diffusion.n_out])
                    # motion None: estimated from the new past (pysteps), as prepared_inputs does
                    item[REVERSED] = stored_fields(prepared_inputs(diffusion, past_r, future_r, mask, None,
                                                                   full_resolution))
                self.items.append(item)
        mb = sum(v.numel() * v.element_size() for it in self.items
                 for v in [*it.values(), *it.get(REVERSED, {}).values()] if isinstance(v, Tensor)) / 2**20
        log.info("precomputed the diffusion inputs of %d windows%s in %.0f s (%.0f MB)", len(self.items),
                 " and of the same played backwards" if time_reversal else "", time.perf_counter() - t0, mb)

    @classmethod
    def from_datamodule(cls, dm: NowcastDataModule, diffusion: ConditionalDiffusion,
                        full_resolution: bool = False, time_reversal: bool = False) -> PreparedResiduals:
        """The training windows of ``dm`` (after its ``setup``), with its crop size and augmentation."""
        train = dm.dataset("train")
        full = RadarWindowDataset(train.store_paths, train.windows, dm.n_in, dm.n_out, crop_size=None,
                                  with_motion=True, in_memory=dm.hparams.in_memory)
        return cls(full, diffusion, dm.crop_size, augment=dm.augment, prefer_rain=dm.prefer_rainy_crops,
                   min_wet_fraction=dm.min_wet_fraction, full_resolution=full_resolution,
                   time_reversal=time_reversal)

    @classmethod
    def replace_training_windows(cls, trainer: Any, diffusion: ConditionalDiffusion,
                                 full_resolution: bool = False, time_reversal: bool = False) -> None:
        """Give the fit of ``trainer`` the precomputed inputs of its training windows (a fit whose
        data is not a :class:`NowcastDataModule`, e.g. a test's loader, is left as it is)."""
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if not isinstance(datamodule, NowcastDataModule):
            return
        if not datamodule.with_motion:
            raise ValueError("precompute needs the data module's motion (data.with_motion: true)")
        datamodule.replace_dataset("train", cls.from_datamodule(datamodule, diffusion, full_resolution,
                                                                time_reversal))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        c = self.crop
        y0, x0 = choose_rainy_crop(item["wet"].numpy(), item[MASK].numpy(), c, rng, self.min_wet_fraction,
                                   self.prefer_rain)
        if self.time_reversal and rng.integers(2):  # the same frames and coverage, played backwards
            item = item[REVERSED]
        out = {key: item[key][..., y0:y0 + c, x0:x0 + c] for key in (COND, RESIDUAL, MASK, MOTION)}
        full = [key for key in (EXTRAPOLATION, FUTURE, FULL_MASK) if key in item]
        k = self.coarsen  # the same crop at the full resolution
        out.update({key: item[key][..., k * y0:k * (y0 + c), k * x0:k * (x0 + c)] for key in full})
        if self.augment:
            out = augment(out, bool(rng.integers(2)), int(rng.integers(4)),
                          fields=(COND, RESIDUAL, MASK, *full))
        return {key: (x if key in (MASK, FULL_MASK) else x.float()).contiguous() for key, x in out.items()}
