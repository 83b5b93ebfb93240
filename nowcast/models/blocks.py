"""Shared building blocks of the learned baselines (ConvLSTM, SimVP, cGAN).

Everything here is a plain ``nn.Module`` working in transform space (see
``nowcast.data.transforms``), plus :class:`NetForecaster`, the one wrapper that puts such a
network behind the Forecaster contract (mm/h in, mm/h out, padding to the network's stride).

Shapes: frames ``(B, T, H, W)``, feature maps ``(B, C, H, W)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nowcast.models.learned import LearnedForecaster


def group_norm(channels: int, max_groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` dividing ``channels``.

    GroupNorm rather than BatchNorm: batches are small and train/eval behave the same.
    """
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvNormAct(nn.Sequential):
    """Conv2d (stride 1 or 2; ``transpose`` for a 2x upsampling) -> GroupNorm -> SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 transpose: bool = False) -> None:
        if transpose:
            conv: nn.Module = nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=kernel // 2,
                                                 output_padding=1)
        else:
            conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
        super().__init__(conv, group_norm(c_out), nn.SiLU())


def down(c_in: int, c_out: int) -> ConvNormAct:
    """Halve the resolution (stride-2 3x3 conv)."""
    return ConvNormAct(c_in, c_out, stride=2)


def up(c_in: int, c_out: int) -> ConvNormAct:
    """Double the resolution (3x3 transposed conv)."""
    return ConvNormAct(c_in, c_out, transpose=True)


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell (Shi et al. 2015) without peepholes: all four gates from one conv.

    ``forward(x (B, C_in, H, W) | None, state (h, c) | None) -> (h, c)``, each (B, C_h, H, W);
    ``x=None`` means no input (the forecaster stack of an encoder-forecaster).
    """

    def __init__(self, c_in: int, c_hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.c_in, self.c_hidden = c_in, c_hidden
        self.gates = nn.Conv2d(c_in + c_hidden, 4 * c_hidden, kernel, padding=kernel // 2)

    def forward(
        self, x: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            if x is None:
                raise ValueError("ConvLSTMCell needs an input or a state")
            zeros = x.new_zeros(x.shape[0], self.c_hidden, *x.shape[2:])
            state = (zeros, zeros)
        h_prev, c_prev = state
        if x is None:
            x = h_prev.new_zeros(h_prev.shape[0], self.c_in, *h_prev.shape[2:])
        i, f, o, g = self.gates(torch.cat([x, h_prev], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad the last two dims of ``x`` up to a multiple of ``multiple``; returns (x, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


class NetForecaster(LearnedForecaster):
    """A learned forecaster whose ``modules["net"]`` maps transformed frames to frames.

    The network contract: ``net(x (B, T_in, H, W), n_out, noise=None) -> (B, n_out, H, W)``
    in transform space, with attribute ``size_multiple`` (H and W must divide by it).
    Deterministic subclasses return one member; stochastic ones (``deterministic = False``)
    get ``members`` independent noise draws in one batched pass via :meth:`draw_noise`.

    Subclasses set ``name``, ``sizes`` (named hparam presets: ``"default"`` for a GPU,
    ``"small"`` for a CPU run, ``"tiny"`` for tests)
    and ``net_class``.
    """

    net_class: type[nn.Module]
    sizes: dict[str, dict[str, Any]] = {}

    @classmethod
    def hparams_for(cls, size: str = "default", **overrides: Any) -> dict[str, Any]:
        """A named size preset with ``overrides`` applied (unknown keys fail when building)."""
        if size not in cls.sizes:
            raise ValueError(f"{cls.name}: unknown size {size!r}; known: {sorted(cls.sizes)}")
        return {**cls.sizes[size], **overrides}

    @classmethod
    def build_modules(cls, hparams: dict[str, Any]) -> dict[str, nn.Module]:
        try:
            return {"net": cls.net_class(**hparams)}
        except TypeError as err:  # a typo in a config: name the accepted arguments
            raise ValueError(f"{cls.name}: bad hparams {sorted(hparams)}: {err}") from err

    @classmethod
    def tiny(cls, **kwargs: Any) -> NetForecaster:
        """A small untrained instance (for contract tests and CPU smoke runs)."""
        hparams = cls.hparams_for("tiny")
        return cls(cls.build_modules(hparams), hparams, **kwargs)

    @property
    def net(self) -> nn.Module:
        return self.modules["net"]

    def draw_noise(self, batch: int, height: int, width: int,
                   generator: torch.Generator | None) -> torch.Tensor | None:
        """Latent noise for ``batch`` samples at padded size (H, W); None for deterministic nets."""
        return None

    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None,
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        m = 1 if self.deterministic else members
        x = self.transform.forward(past)
        x, (h, w) = pad_to_multiple(x, self.net.size_multiple)
        x = x.repeat_interleave(m, dim=0)  # (B*M, T_in, H', W'), members of one case adjacent
        noise = self.draw_noise(x.shape[0], x.shape[-2], x.shape[-1], generator)
        y = self.net(x, n_out, noise=noise)[..., :h, :w].float()
        rain = self.transform.inverse(y)
        return rain.reshape(past.shape[0], m, n_out, h, w)
