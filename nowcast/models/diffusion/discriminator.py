"""Time-conditional discriminator of the adversarial large-step stage (Xiao et al., ICLR 2022).

``D(x_prev, x_t, t, cond)`` judges whether ``x_prev`` (the sample at the next, less noisy,
sampling step) is a real draw of ``q(x_prev | x_t)`` or the generator's, given the noisy
frames ``x_t``, the diffusion step ``t`` and the conditioning frames (past, then
extrapolation). A small residual conv net; no normalisation across the batch, so the R1
penalty is per sample; global mean pooling makes it size independent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast.models.diffusion.denoiser import timestep_embedding


class DownBlock(nn.Module):
    """Residual block with a time-embedding bias, halving the resolution: (B, C_in, H, W) ->
    (B, C_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=2, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2) + self.time(temb)[:, :, None, None]
        h = self.conv2(h)
        return (h + F.avg_pool2d(self.skip(x), 2, ceil_mode=True)) / 2**0.5


class Discriminator(nn.Module):
    """Conditional discriminator: one logit per sample.

    Args:
        n_out: frames in ``x_prev`` and ``x_t``.
        cond_channels: channels of ``cond`` (past frames, then extrapolation frames if used).
        channels: width of the first block (doubled per block, capped at 4x).
        depth: number of down-sampling blocks (input H and W need not be multiples of 2**depth).
        t_dim: size of the diffusion-time embedding.
    """

    def __init__(self, n_out: int, cond_channels: int, channels: int = 64, depth: int = 3,
                 t_dim: int = 128) -> None:
        super().__init__()
        if depth < 1 or channels < 1:
            raise ValueError(f"depth and channels must be >= 1, got {depth}, {channels}")
        self.n_out, self.cond_channels, self.t_dim = n_out, cond_channels, t_dim
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(2 * n_out + cond_channels, channels, 3, padding=1)
        widths = [channels * min(2**i, 4) for i in range(depth + 1)]
        self.blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], t_dim) for i in range(depth))
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x_prev: Tensor, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """
        Args:
            x_prev: (B, n_out, H, W) sample at the next sampling step (model space).
            x_t: (B, n_out, H, W) noisy sample at step ``t``.
            t: (B,) LongTensor of training-step indices.
            cond: (B, cond_channels, H, W) conditioning frames.

        Returns:
            (B,) logits (real > 0).
        """
        b, _, h, w = x_t.shape
        bad = x_prev.shape != x_t.shape or x_t.shape[1] != self.n_out
        if bad or cond.shape != (b, self.cond_channels, h, w):
            raise ValueError(f"expected x_prev, x_t (B, {self.n_out}, H, W) and cond "
                             f"(B, {self.cond_channels}, H, W), got {tuple(x_prev.shape)}, "
                             f"{tuple(x_t.shape)}, {tuple(cond.shape)}")
        temb = self.t_mlp(timestep_embedding(t.reshape(-1).expand(b), self.t_dim).to(x_t.dtype))
        h = self.conv_in(torch.cat([x_prev, x_t, cond.to(x_t.dtype)], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        return self.head(F.leaky_relu(h, 0.2).mean(dim=(2, 3))).squeeze(1)

