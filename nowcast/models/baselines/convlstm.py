"""ConvLSTM encoder-forecaster (Shi et al., NeurIPS 2015), with the down/upsampling stacks of
its follow-up (TrajGRU, Shi et al. 2017) so that 256x256 frames fit in memory.

Network (transform space)::

    encoder    for each past frame:  stem -> [down -> ConvLSTM] x L          (states at H/2 .. H/2^L)
    forecaster for each lead time:   [ConvLSTM -> up] x L, deepest first -> 1x1 head -> frame

The forecaster stack starts from the encoder's final states and unrolls ``n_out`` steps in
latent space (any ``n_out``). Without noise its deepest cell gets no input (as in Shi et al.);
with ``noise_channels > 0`` it gets a latent-noise feature map at every step, which is how
the conditional GAN's generator (``cgan.py``) draws ensemble members, as DGMR's sampler does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nowcast.models.base import FORECASTERS
from nowcast.models.blocks import ConvLSTMCell, ConvNormAct, NetForecaster, down, up


class ConvLSTMNet(nn.Module):
    """``forward(x (B, T_in, H, W), n_out, noise (B, noise_channels, H/2^L, W/2^L) | None)``
    -> ``(B, n_out, H, W)``; H and W divisible by ``2**len(channels)``."""

    def __init__(self, stem: int = 16, channels: Sequence[int] = (32, 64, 64),
                 noise_channels: int = 0) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels:
            raise ValueError("ConvLSTMNet needs at least one level")
        self.noise_channels = noise_channels
        self.size_multiple = 2 ** len(channels)
        widths = [stem, *channels]
        self.stem = ConvNormAct(1, stem)
        self.enc_down = nn.ModuleList(down(widths[i], widths[i + 1]) for i in range(len(channels)))
        self.enc_cells = nn.ModuleList(ConvLSTMCell(c, c) for c in channels)
        deepest = channels[-1]
        self.noise_proj = (
            nn.Sequential(ConvNormAct(noise_channels, deepest), ConvNormAct(deepest, deepest))
            if noise_channels else None
        )
        # forecaster cell i gets the upsampled output of cell i+1 (width channels[i]); the
        # deepest one gets the noise features or nothing
        fc_inputs = [*channels[:-1], deepest if noise_channels else 0]
        self.fc_cells = nn.ModuleList(
            ConvLSTMCell(c_in, c) for c_in, c in zip(fc_inputs, channels, strict=True)
        )
        self.fc_up = nn.ModuleList(up(widths[i + 1], widths[i]) for i in range(len(channels)))
        self.head = nn.Conv2d(stem, 1, 1)

    def forward(self, x: torch.Tensor, n_out: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        if (noise is None) != (self.noise_proj is None):
            raise ValueError("noise must be given exactly when noise_channels > 0")
        states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.enc_cells)
        for t in range(x.shape[1]):
            f = self.stem(x[:, t : t + 1])
            for i, (down_i, cell) in enumerate(zip(self.enc_down, self.enc_cells, strict=True)):
                states[i] = cell(down_i(f), states[i])
                f = states[i][0]
        z = self.noise_proj(noise) if self.noise_proj is not None else None
        frames = []
        for _ in range(n_out):
            inp = z
            for i in reversed(range(len(self.fc_cells))):
                states[i] = self.fc_cells[i](inp, states[i])
                inp = self.fc_up[i](states[i][0])
            frames.append(self.head(inp))
        return torch.cat(frames, dim=1)


@FORECASTERS.register("convlstm")
class ConvLSTMForecaster(NetForecaster):
    """Deterministic ConvLSTM encoder-forecaster; one member, any lead time count."""

    summary = "ConvLSTM encoder-forecaster baseline (deterministic)"

    name = "convlstm"
    deterministic = True
    net_class = ConvLSTMNet
    sizes = {
        "default": {"stem": 32, "channels": [64, 96, 128]},
        "small": {"stem": 8, "channels": [16, 32, 32]},
        "tiny": {"stem": 4, "channels": [8, 8]},
    }
