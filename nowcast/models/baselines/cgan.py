"""Conditional GAN in the spirit of DGMR (Ravuri et al., Nature 2021).

- Generator: the ConvLSTM encoder-forecaster of ``convlstm.py`` with a latent-noise input
  (DGMR: conditioning stack -> initial states of recurrent cells, latent noise -> their
  input at every lead time). Each noise draw is one ensemble member; the forecaster draws
  all members in one batched pass.
- Spatial discriminator: scores ``n_frames`` randomly chosen future frames one by one
  (2-D residual blocks) and sums; judges the realism of single fields.
- Temporal discriminator: scores the past + future sequence of a random crop with 3-D
  residual blocks, then 2-D ones per remaining time step; judges temporal consistency.

Both discriminators use spectral normalisation (as DGMR) and output one score per sample.
Losses (hinge, grid-cell regulariser) live in ``nowcast.training.baseline_tasks``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from nowcast.models.base import FORECASTERS
from nowcast.models.baselines.convlstm import ConvLSTMNet
from nowcast.models.blocks import NetForecaster


class DBlock(nn.Module):
    """Residual downsampling block (BigGAN/DGMR D-block), 2-D or 3-D, spectrally normalised.

    ``(B, C_in, [T,] H, W) -> (B, C_out, [T/2,] H/2, W/2)`` (no pooling if ``downsample=False``).
    """

    def __init__(self, c_in: int, c_out: int, dims: int = 2, downsample: bool = True,
                 first_act: bool = True) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.pool = (F.avg_pool2d if dims == 2 else F.avg_pool3d) if downsample else None
        self.first_act = first_act
        self.conv1 = spectral_norm(conv(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(conv(c_out, c_out, 3, padding=1))
        self.shortcut = spectral_norm(conv(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.first_act else x
        h = self.conv2(F.relu(self.conv1(h)))
        s = self.shortcut(x)
        if self.pool is not None:
            h, s = self.pool(h, 2), self.pool(s, 2)
        return h + s


class _ScoreHead(nn.Module):
    """ReLU -> sum over space -> linear: (N, C, H, W) -> (N,)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = spectral_norm(nn.Linear(channels, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(F.relu(f).sum(dim=(-2, -1))).squeeze(-1)


class SpatialDiscriminator(nn.Module):
    """``forward(future (B, T, H, W)) -> (B,)``: sum of per-frame scores over ``n_frames``
    randomly chosen frames (DGMR picks 8 of 18)."""

    def __init__(self, base: int = 32, n_blocks: int = 4, n_frames: int = 4) -> None:
        super().__init__()
        widths = [1] + [base * 2 ** min(i, 3) for i in range(n_blocks)]
        self.n_frames = n_frames
        self.blocks = nn.Sequential(*(DBlock(widths[i], widths[i + 1], first_act=i > 0)
                                      for i in range(n_blocks)))
        self.head = _ScoreHead(widths[-1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, h, w = frames.shape
        k = min(self.n_frames, t)
        idx = torch.randperm(t, device=frames.device)[:k]
        x = frames[:, idx].reshape(b * k, 1, h, w)
        return self.head(self.blocks(x)).reshape(b, k).sum(dim=1)


class TemporalDiscriminator(nn.Module):
    """``forward(sequence (B, T, H, W)) -> (B,)`` on a random ``crop``-pixel square (None: all).

    Two 3-D D-blocks (halving time and space), then 2-D D-blocks per remaining time step,
    scores summed over time.
    """

    def __init__(self, base: int = 32, n_blocks: int = 4, crop: int | None = None) -> None:
        super().__init__()
        if n_blocks < 3:
            raise ValueError("TemporalDiscriminator needs n_blocks >= 3")
        self.crop = crop
        widths = [1] + [base * 2 ** min(i, 3) for i in range(n_blocks)]
        self.blocks3d = nn.Sequential(DBlock(widths[0], widths[1], dims=3, first_act=False),
                                      DBlock(widths[1], widths[2], dims=3))
        self.blocks2d = nn.Sequential(*(DBlock(widths[i], widths[i + 1]) for i in range(2, n_blocks)))
        self.head = _ScoreHead(widths[-1])

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        b, t, h, w = seq.shape
        if self.crop is not None and (h > self.crop or w > self.crop):
            y0 = int(torch.randint(0, h - self.crop + 1, ()))
            x0 = int(torch.randint(0, w - self.crop + 1, ()))
            seq = seq[..., y0 : y0 + self.crop, x0 : x0 + self.crop]
        f = self.blocks3d(seq[:, None])  # (B, C, T/4, H/4, W/4)
        c, t2 = f.shape[1], f.shape[2]
        f = f.transpose(1, 2).reshape(b * t2, c, *f.shape[3:])
        return self.head(self.blocks2d(f)).reshape(b, t2).sum(dim=1)


@FORECASTERS.register("cgan")
class CGANForecaster(NetForecaster):
    """Ensemble forecaster: each member is the generator under an independent noise draw.

    Noise is drawn on ``generator``'s device (the model's if none is given) and then moved,
    so a seeded CPU generator gives the same noise whatever device the model is on.
    """

    summary = "conditional GAN baseline in the spirit of DGMR (ensemble)"

    name = "cgan"
    deterministic = False
    net_class = ConvLSTMNet
    sizes = {
        "default": {"stem": 32, "channels": [64, 96, 128], "noise_channels": 8},
        "small": {"stem": 8, "channels": [16, 32, 32], "noise_channels": 4},
        "tiny": {"stem": 4, "channels": [8, 8], "noise_channels": 4},
    }

    def draw_noise(self, batch: int, height: int, width: int,
                   generator: torch.Generator | None) -> torch.Tensor:
        net = self.net
        shape = (batch, net.noise_channels, height // net.size_multiple, width // net.size_multiple)
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device).to(self.device)
