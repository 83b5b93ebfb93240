"""SimVP (Gao et al., CVPR 2022) with the gSTA translator of SimVP v2 (Tan et al. 2022).

Network (transform space), all lead times at once::

    encoder     per past frame: n_s ConvNormAct, every second one stride 2   (B*T_in, C_s, H/4, W/4)
    translator  frames stacked on channels: 1x1 (T_in*C_s -> C_t) -> n_t gSTA blocks
                -> 1x1 (C_t -> T_out*C_s)
    decoder     per lead time: mirror of the encoder, the last layer also sees the first
                encoder layer of the latest past frame (SimVP's skip; T_in != T_out here)

Lead times beyond the trained ``n_out`` are rolled out by feeding the latest ``n_in``
predicted frames back in (as OpenSTL does for longer horizons).
"""

from __future__ import annotations

import torch
from torch import nn

from nowcast.models.base import FORECASTERS
from nowcast.models.blocks import ConvNormAct, NetForecaster, group_norm


class GatedSpatialAttention(nn.Module):
    """gSTA attention: large-kernel (5x5 depthwise + 7x7 depthwise dilated 3 ~ 21x21 field)
    features gated by a sigmoid branch, between two 1x1 projections, with a shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())
        self.local = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim)
        self.gate = nn.Conv2d(dim, 2 * dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.proj_in(x)
        f, g = self.gate(self.dilated(self.local(a))).chunk(2, dim=1)
        return x + self.proj_out(torch.sigmoid(g) * f)


class GSTABlock(nn.Module):
    """gSTA block: pre-norm attention and depthwise-conv MLP, each with a layer scale."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = group_norm(dim), group_norm(dim)
        self.attn = GatedSpatialAttention(dim)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(), nn.Conv2d(hidden, dim, 1),
        )
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), 1e-2))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm1(x))
        return x + self.scale2 * self.mlp(self.norm2(x))


class SimVPNet(nn.Module):
    """``forward(x (B, n_in, H, W), n_out, noise=None) -> (B, n_out, H, W)``; H, W divisible by
    ``2 ** (n_s // 2)``."""

    def __init__(self, n_in: int = 4, n_out: int = 12, hid_s: int = 32, hid_t: int = 128,
                 n_s: int = 4, n_t: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if n_s < 2:
            raise ValueError("SimVPNet needs n_s >= 2")
        self.n_in, self.n_out, self.hid_s = n_in, n_out, hid_s
        strides = [1 + (i % 2) for i in range(n_s)]  # 1, 2, 1, 2, ...
        self.size_multiple = 2 ** sum(s == 2 for s in strides)
        self.enc = nn.ModuleList(
            ConvNormAct(1 if i == 0 else hid_s, hid_s, stride=s) for i, s in enumerate(strides)
        )
        self.translator = nn.Sequential(
            nn.Conv2d(n_in * hid_s, hid_t, 1),
            *(GSTABlock(hid_t, mlp_ratio) for _ in range(n_t)),
            nn.Conv2d(hid_t, n_out * hid_s, 1),
        )
        self.dec = nn.ModuleList(
            ConvNormAct(hid_s, hid_s, transpose=s == 2) for s in reversed(strides[1:])
        )
        self.dec_last = ConvNormAct(2 * hid_s, hid_s)
        self.head = nn.Conv2d(hid_s, 1, 1)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_in, H, W) -> (B, self.n_out, H, W)."""
        b, t, h, w = x.shape
        f = x.reshape(b * t, 1, h, w)
        skip = None
        for i, layer in enumerate(self.enc):
            f = layer(f)
            if i == 0:
                skip = f.reshape(b, t, self.hid_s, h, w)[:, -1]
        z = self.translator(f.reshape(b, t * self.hid_s, *f.shape[2:]))
        f = z.reshape(b * self.n_out, self.hid_s, *z.shape[2:])
        for layer in self.dec:
            f = layer(f)
        skip = skip.repeat_interleave(self.n_out, dim=0)
        f = self.dec_last(torch.cat([f, skip], dim=1))
        return self.head(f).reshape(b, self.n_out, h, w)

    def forward(self, x: torch.Tensor, n_out: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1] != self.n_in:
            raise ValueError(f"SimVPNet built for {self.n_in} past frames, got {x.shape[1]}")
        frames: list[torch.Tensor] = []
        context = x
        while sum(f.shape[1] for f in frames) < n_out:
            y = self._step(context[:, -self.n_in:])
            frames.append(y)
            context = torch.cat([context, y], dim=1)
        return torch.cat(frames, dim=1)[:, :n_out]


@FORECASTERS.register("simvp")
class SimVPForecaster(NetForecaster):
    """Deterministic SimVP (gSTA translator); one member, all trained lead times in one pass."""

    summary = "SimVP video-prediction baseline (deterministic)"

    name = "simvp"
    deterministic = True
    net_class = SimVPNet
    sizes = {
        "default": {"n_in": 4, "n_out": 12, "hid_s": 64, "hid_t": 256, "n_s": 4, "n_t": 6},
        "small": {"n_in": 4, "n_out": 12, "hid_s": 16, "hid_t": 64, "n_s": 4, "n_t": 2},
        "tiny": {"n_in": 4, "n_out": 12, "hid_s": 8, "hid_t": 16, "n_s": 2, "n_t": 1},
    }
