"""Spatiotemporal Transformer denoiser (Zhao et al., TGRS 2024: a Transformer, not a U-Net).

Tokens are ``p x p`` patches of every frame: the ``n_in`` past frames and the ``n_out``
noisy future frames (each future frame concatenated channel-wise with its extrapolation
frame when there is one, so the motion is handed to the network pixel-aligned). Each block
applies

1. spatial attention among the patches of one frame,
2. temporal attention across all frames at one patch location (future frames attend to each
   other and to the past),
3. an MLP,

each modulated by the diffusion time through adaptive layer norm with zero-initialised gates
(adaLN-zero, Peebles & Xie 2023, "DiT"), so every block starts as the identity. Positions are
fixed 2-D sine-cosine embeddings computed for the input's size, so one network runs on 128 px
training crops and 256 px scoring windows. An optional latent ``z`` enters the conditioning
embedding through a zero-initialised projection (the adversarial large-step generator of
Xiao et al. 2022 starts as the plain denoiser).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_2d(h: int, w: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(h * w, dim) fixed 2-D sine-cosine position embedding (half the channels per axis)."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sincos embeddings, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    out = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        arg = pos[:, None] * omega[None]
        out += [arg.sin(), arg.cos()]
    return torch.cat(out, dim=1)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) diffusion times (int steps or floats) -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = t.float()[:, None] * freqs[None]
    return torch.cat([arg.cos(), arg.sin()], dim=1)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(N, L, D) -> (N, L, D): full attention over the L tokens of each of N sequences."""
        n, length, d = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class SpaceTimeBlock(nn.Module):
    """Factorized space-time attention block with adaLN-zero conditioning."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(3))
        self.spatial = Attention(dim, heads)
        self.temporal = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B, F, N, D) tokens of F frames x N patches; c (B, D) conditioning."""
        b, f, n, d = x.shape
        mods = self.ada(c)[:, None, None].chunk(9, dim=-1)
        (s1, sc1, g1), (s2, sc2, g2), (s3, sc3, g3) = mods[0:3], mods[3:6], mods[6:9]
        h = _modulate(self.norms[0](x), s1, sc1).reshape(b * f, n, d)
        x = x + g1 * self.spatial(h).reshape(b, f, n, d)
        h = _modulate(self.norms[1](x), s2, sc2).transpose(1, 2).reshape(b * n, f, d)
        x = x + g2 * self.temporal(h).reshape(b, n, f, d).transpose(1, 2)
        return x + g3 * self.mlp(_modulate(self.norms[2](x), s3, sc3))


class SpatioTemporalTransformer(nn.Module):
    """Denoiser ``forward(x_t, t, cond, z=None) -> output`` (same shape as ``x_t``).

    Args:
        n_in: past frames in ``cond``.
        n_out: future frames being denoised.
        extrapolation: if True, ``cond`` also holds one extrapolation frame per future frame
            (``cond = cat([past, extrapolation], dim=1)``, ``n_in + n_out`` channels); if
            False it holds only the past (``n_in`` channels).
        dim, depth, heads, mlp_ratio: Transformer width, number of blocks, attention heads,
            MLP expansion.
        patch: patch size ``p`` in pixels; H and W of every input must be multiples of it.
        z_dim: size of the optional latent input (0 = none).
    """

    def __init__(self, n_in: int = 4, n_out: int = 12, extrapolation: bool = True, dim: int = 256,
                 depth: int = 6, heads: int = 8, patch: int = 4, mlp_ratio: float = 4.0,
                 z_dim: int = 0) -> None:
        super().__init__()
        self.n_in, self.n_out, self.extrapolation = n_in, n_out, extrapolation
        self.dim, self.patch, self.z_dim = dim, patch, z_dim
        pp = patch * patch
        self.embed_past = nn.Linear(pp, dim)
        self.embed_future = nn.Linear((2 if extrapolation else 1) * pp, dim)
        self.frame_embed = nn.Parameter(torch.zeros(n_in + n_out, dim))
        nn.init.normal_(self.frame_embed, std=0.02)
        self.t_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.z_proj = nn.Linear(z_dim, dim) if z_dim > 0 else None
        if self.z_proj is not None:
            nn.init.zeros_(self.z_proj.weight)
            nn.init.zeros_(self.z_proj.bias)
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, pp)
        for layer in (self.final_ada[1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def cond_channels(self) -> int:
        return self.n_in + (self.n_out if self.extrapolation else 0)

    @property
    def size_multiple(self) -> int:
        """H and W of every input must be multiples of this (the patch size)."""
        return self.patch

    def _patchify(self, x: Tensor) -> Tensor:
        """(B, F, C, H, W) -> (B, F, (H/p)(W/p), C p p)."""
        b, f, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, f, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, f, (h // p) * (w // p), c * p * p)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor, z: Tensor | None = None) -> Tensor:
        """
        Args:
            x_t: (B, n_out, H, W) noisy future frames (model space).
            t: (B,) diffusion time (integer steps or floats), or a scalar for all.
            cond: (B, cond_channels, H, W) past frames, then extrapolation frames if used.
            z: (B, z_dim) latent, or None (no latent).

        Returns:
            (B, n_out, H, W) the network output (epsilon, v or x0 by the wrapper's objective).
        """
        b, f_out, h, w = x_t.shape
        p = self.patch
        if f_out != self.n_out or cond.shape != (b, self.cond_channels, h, w):
            raise ValueError(f"expected x_t (B, {self.n_out}, H, W) and cond "
                             f"(B, {self.cond_channels}, H, W), "
                             f"got {tuple(x_t.shape)} and {tuple(cond.shape)}")
        if h % p or w % p:
            raise ValueError(f"frame {h}x{w} is not a multiple of the patch size {p}")
        past = cond[:, : self.n_in, None]
        future = x_t[:, :, None]
        if self.extrapolation:
            future = torch.cat([future, cond[:, self.n_in:, None]], dim=2)
        tokens = torch.cat([self.embed_past(self._patchify(past)),
                            self.embed_future(self._patchify(future))], dim=1)  # (B, F, N, D)
        pos = sincos_2d(h // p, w // p, self.dim, device=x_t.device).to(tokens.dtype)
        tokens = tokens + pos[None, None] + self.frame_embed[None, :, None].to(tokens.dtype)

        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        c = self.t_mlp(timestep_embedding(t, self.dim).to(tokens.dtype))
        if z is not None and self.z_proj is not None:
            c = c + self.z_proj(z.to(c.dtype))
        elif z is not None:
            raise ValueError("this denoiser was built with z_dim=0 and takes no latent z")
        for block in self.blocks:
            tokens = block(tokens, c)

        shift, scale = self.final_ada(c)[:, None, None].chunk(2, dim=-1)
        out = self.final(_modulate(self.final_norm(tokens[:, self.n_in:]), shift, scale))  # (B, n_out, N, pp)
        out = out.reshape(b, f_out, h // p, w // p, p, p).permute(0, 1, 2, 4, 3, 5)
        return out.reshape(b, f_out, h, w)
