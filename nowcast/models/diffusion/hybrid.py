"""U-shaped hybrid denoiser: convolutions at full resolution, space-time attention on a coarse grid.

The pure patch Transformer (:class:`~nowcast.models.diffusion.denoiser.SpatioTemporalTransformer`)
spends every parameter on tokens and reconstructs pixels with a linear unpatchify, which costs
GPU-hours to learn and leaves a block pattern when under-trained. This network keeps the paper's
spatiotemporal Transformer where it pays, on a coarse token grid, and lets cheap convolutions do
the local work:

1. a convolutional encoder sees all frames at once, time as channels (the past, the noisy
   future and its extrapolation: ``n_in + 2 n_out`` input channels), and halves the resolution
   at each of its levels; on a CPU this is 16 times cheaper than encoding every frame
   separately at the same width;
2. at the coarsest level the features are split into one token per future frame and grid
   cell (a linear map per frame), and :class:`SpaceTimeBlock` s (factorised spatial / temporal
   attention with adaLN-zero time conditioning, 2-D sine-cosine positions, learned frame
   embedding) let every lead time attend to every other and to every place. The past needs no
   tokens of its own: the encoder has already mixed it into every channel, and the attention
   blocks cost most of a CPU step (tokens of the 4 past frames would add a third);
3. the tokens are merged back into channels and decoded by upsampling stages with skip
   connections; a zero-initialised convolution gives the ``n_out`` output frames.

With ``fold > 1`` the network works on a full-resolution field at the cost of a coarse one: each
``fold x fold`` block of pixels becomes ``fold**2`` channels on entry (space-to-depth, lossless,
unlike block means) and the output channels are put back into their pixels at the end, followed
by a per-frame 3x3 convolution that starts as the identity and can learn to blend the blocks'
seams. A 2 km residual then costs what an 8 km one does, and keeps its 2 km detail.

The output convolution and every residual branch's last layer start at zero, so an untrained
network outputs 0: with the x0 objective on the extrapolation residual (the recipe in
``configs/train/diffusion.yaml``) an untrained or barely trained model forecasts the
extrapolation itself, never noise. Every convolution sees the diffusion time through a
scale-and-shift of its normalised features (FiLM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast.models.diffusion.denoiser import SpaceTimeBlock, sincos_2d, timestep_embedding


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a time-conditioned (FiLM) group norm; the residual branch starts at 0."""

    def __init__(self, c_in: int, c_out: int, c_emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(c_emb, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (N, c_in, H, W), emb (N, c_emb) -> (N, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SpaceTimeUNet(nn.Module):
    """Denoiser ``forward(x_t, t, cond, z=None) -> output`` (same shape as ``x_t``).

    Args:
        n_in: past frames in ``cond``.
        n_out: future frames being denoised.
        extrapolation: ``cond`` also holds one extrapolation frame per future frame
            (``cat([past, extrapolation], dim=1)``).
        channels: encoder widths, one per resolution (``channels[0]`` at full resolution);
            ``len(channels) - 1`` halvings, so H and W must be multiples of
            :attr:`size_multiple`.
        dim, depth, heads, mlp_ratio: the Transformer on the coarsest grid (tokens of ``dim``
            per frame and cell).
        z_dim: size of an optional latent input (adversarial large-step generator; 0 = none).
        noise_maps: standard-normal maps of the diffusion grid given beside ``x_t`` (a spatial
            latent of a large-step generator: pixel-by-pixel randomness that a global ``z``
            cannot give); their input weights start at zero, so the network starts as without.
        fold: side of the pixel blocks folded into channels (space-to-depth) before the first
            convolution and unfolded after the last; 1 = none.
    """

    def __init__(self, n_in: int = 4, n_out: int = 12, extrapolation: bool = True,
                 channels: tuple[int, ...] | list[int] = (32, 64, 128), dim: int = 96, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 2.0, z_dim: int = 0, fold: int = 1,
                 noise_maps: int = 0) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1:
            raise ValueError("channels needs at least one width")
        if int(fold) < 1:
            raise ValueError(f"fold must be >= 1, got {fold}")
        self.n_in, self.n_out, self.extrapolation = n_in, n_out, extrapolation
        if int(noise_maps) < 0:
            raise ValueError(f"noise_maps must be >= 0, got {noise_maps}")
        self.channels, self.dim, self.z_dim, self.fold = channels, dim, z_dim, int(fold)
        self.noise_maps = int(noise_maps)
        folded = self.fold ** 2
        self.t_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.z_proj = nn.Linear(z_dim, dim) if z_dim > 0 else None
        if self.z_proj is not None:
            nn.init.zeros_(self.z_proj.weight)
            nn.init.zeros_(self.z_proj.bias)
        inputs = n_out + self.cond_channels + self.noise_maps
        self.stem = nn.Conv2d(inputs * folded, channels[0], 3, padding=1)
        if self.noise_maps:  # the noise maps are the last inputs (after pixel_unshuffle too)
            with torch.no_grad():
                self.stem.weight[:, -self.noise_maps * folded:].zero_()
        self.enc = nn.ModuleList(ResBlock(c, c, dim) for c in channels)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                  for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.to_tokens = nn.Conv2d(channels[-1], n_out * dim, 1)
        self.frame_embed = nn.Parameter(torch.randn(n_out, dim) * 0.02)
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.from_tokens = nn.Conv2d(n_out * dim, channels[-1], 1)
        self.dec = nn.ModuleList(ResBlock(2 * c, c, dim) for c in channels)
        self.up = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1)
                                for a, b in zip(channels[:-1], channels[1:], strict=True))
        self.out_norm = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.out = nn.Conv2d(channels[0], n_out * folded, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.seams = None
        if self.fold > 1:  # per-frame 3x3 at full resolution, the identity at first, no bias (0 stays 0)
            self.seams = nn.Conv2d(n_out, n_out, 3, padding=1, groups=n_out, bias=False)
            with torch.no_grad():
                self.seams.weight.zero_()
                self.seams.weight[:, 0, 1, 1] = 1.0

    @property
    def cond_channels(self) -> int:
        return self.n_in + (self.n_out if self.extrapolation else 0)

    @property
    def size_multiple(self) -> int:
        """H and W of every input must be multiples of this (the fold, then one halving per extra level)."""
        return self.fold * 2 ** (len(self.channels) - 1)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor, z: Tensor | None = None,
                noise: Tensor | None = None) -> Tensor:
        """
        Args:
            x_t: (B, n_out, H, W) noisy future frames (model space).
            t: (B,) diffusion time (integer steps or floats), or a scalar for all.
            cond: (B, cond_channels, H, W) past frames, then extrapolation frames if used.
            z: (B, z_dim) latent, or None.
            noise: (B, noise_maps, H, W) spatial latent, or None (zeros: the network's mean
                behaviour); only with ``noise_maps``.

        Returns:
            (B, n_out, H, W) the network output (epsilon, v or x0 by the wrapper's objective).
        """
        b, f_out, h, w = x_t.shape
        m = self.size_multiple
        if f_out != self.n_out or cond.shape != (b, self.cond_channels, h, w):
            raise ValueError(f"expected x_t (B, {self.n_out}, H, W) and cond "
                             f"(B, {self.cond_channels}, H, W), got {tuple(x_t.shape)} and "
                             f"{tuple(cond.shape)}")
        if h % m or w % m:
            raise ValueError(f"frame {h}x{w} is not a multiple of {m} (fold {self.fold}, "
                             f"{len(self.channels) - 1} halvings)")
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        c = self.t_mlp(timestep_embedding(t, self.dim).to(x_t.dtype))
        if z is not None and self.z_proj is None:
            raise ValueError("this denoiser was built with z_dim=0 and takes no latent z")
        if z is not None:
            c = c + self.z_proj(z.to(c.dtype))

        inputs = [x_t, cond]
        maps = (b, self.noise_maps, h, w)
        if noise is not None and noise.shape != maps:
            raise ValueError(f"noise must be (B, noise_maps, H, W) = {maps}, got {tuple(noise.shape)}")
        if self.noise_maps:
            inputs.append(noise.to(x_t.dtype) if noise is not None else x_t.new_zeros(maps))
        x = self.stem(F.pixel_unshuffle(torch.cat(inputs, dim=1), self.fold))
        skips = []
        for level, block in enumerate(self.enc):
            x = block(x, c)
            skips.append(x)
            if level < len(self.down):
                x = self.down[level](x)

        # one token per future frame and coarse cell: (B, n_out, N, D)
        hc, wc = x.shape[-2:]
        tokens = self.to_tokens(x).reshape(b, self.n_out, self.dim, hc * wc).transpose(2, 3)
        pos = sincos_2d(hc, wc, self.dim, device=x.device).to(tokens.dtype)
        tokens = tokens + pos[None, None] + self.frame_embed[None, :, None].to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, c)
        x = x + self.from_tokens(tokens.transpose(2, 3).reshape(b, self.n_out * self.dim, hc, wc))

        for level in reversed(range(len(self.channels))):
            x = self.dec[level](torch.cat([x, skips[level]], dim=1), c)
            if level > 0:
                x = self.up[level - 1](F.interpolate(x, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(self.out_norm(x)))
        if self.seams is None:
            return out
        return self.seams(F.pixel_shuffle(out, self.fold))
