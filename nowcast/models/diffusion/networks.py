"""Denoiser networks by name: one place turns a checkpoint's ``hparams`` into a network."""

from __future__ import annotations

from typing import Any

from nowcast.models.diffusion.denoiser import SpatioTemporalTransformer
from nowcast.models.diffusion.hybrid import SpaceTimeUNet

#: ``hparams["architecture"]`` -> network class (a checkpoint without the key is a "transformer")
DENOISERS: dict[str, type[SpatioTemporalTransformer] | type[SpaceTimeUNet]] = {
    "transformer": SpatioTemporalTransformer,
    "hybrid": SpaceTimeUNet,
}

Denoiser = SpatioTemporalTransformer | SpaceTimeUNet


def build_denoiser(net_hparams: dict[str, Any]) -> Denoiser:
    """The network of ``net_hparams`` (its constructor arguments plus ``architecture``)."""
    args = dict(net_hparams)
    name = args.pop("architecture", "transformer")
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser architecture {name!r}; known: {', '.join(DENOISERS)}")
    return DENOISERS[name](**args)
