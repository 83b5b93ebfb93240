"""Invertible rain-rate transforms: the one place that says what models see.

Stores and forecasts hold rain rate ``R`` in mm/h (NaN = no coverage). Models see a
transformed value; everything that leaves a model is mapped back to mm/h.

``dbz`` (default, also the image-metric "pixel" scale of DESIGN.md)::

    Z  = a * R**b                      Marshall-Palmer, a = 200, b = 1.6
    p  = clip(10*log10(Z), 0, 60) / 60 in [0, 1]; R = 0 -> p = 0
    R  = (10**(6*p) / a) ** (1/b)      for p >= p_min, else 0

    p_min is the pixel value of 0.1 mm/h (about 0.117): rain below the ingest threshold
    becomes 0, so the inverse is exact on everything a store can hold (R = 0 or
    0.1 <= R <= ~205 mm/h, the rate of 60 dBZ).

``log``::

    x = log10(R + 0.01) rescaled to [0, 1] over [0.01, 200] mm/h (R = 0 -> 0)

Transforms are registered in :data:`TRANSFORMS`; a checkpoint stores the transform's
:meth:`RainTransform.to_dict` and refuses a different one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nowcast.registry import Registry
from nowcast.types import RAIN_THRESHOLD_MM_H

TRANSFORMS: Registry[type[RainTransform]] = Registry("transform")

DBZ_MAX = 60.0


def rain_to_dbz(rain: torch.Tensor, a: float = 200.0, b: float = 1.6) -> torch.Tensor:
    """Reflectivity (dBZ) of rain rate (mm/h) via Z = a R^b; R = 0 gives -inf."""
    return 10.0 * torch.log10(torch.as_tensor(a, dtype=rain.dtype)) + 10.0 * b * torch.log10(rain)


def dbz_to_rain(dbz: torch.Tensor, a: float = 200.0, b: float = 1.6) -> torch.Tensor:
    """Rain rate (mm/h) of reflectivity (dBZ) via Z = a R^b."""
    return (10.0 ** (dbz / 10.0) / a) ** (1.0 / b)


class RainTransform:
    """Maps rain rate (mm/h, >= 0, finite) to model space and back. Works on any shape."""

    name: str = ""

    def forward(self, rain: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, x: torch.Tensor, threshold: bool = True) -> torch.Tensor:
        """Model value -> mm/h. ``threshold=False`` keeps the smooth curve below the ingest
        threshold instead of cutting it to 0 (a loss in mm/h then has a gradient there)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.__dict__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RainTransform) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"


@TRANSFORMS.register("dbz")
class DBZTransform(RainTransform):
    """Pixel scale p = clip(dBZ, 0, 60)/60 (Marshall-Palmer), the image-metric scale."""

    name = "dbz"

    def __init__(self, a: float = 200.0, b: float = 1.6) -> None:
        self.a = float(a)
        self.b = float(b)

    @property
    def threshold(self) -> float:
        """Pixel value of the ingest threshold (0.1 mm/h); smaller values mean no rain."""
        return float(rain_to_dbz(torch.tensor(RAIN_THRESHOLD_MM_H, dtype=torch.float64),
                                 self.a, self.b)) / DBZ_MAX

    def forward(self, rain: torch.Tensor) -> torch.Tensor:
        rain = rain.clamp(min=0.0)
        dbz = rain_to_dbz(rain.clamp(min=1e-12), self.a, self.b)
        p = (dbz / DBZ_MAX).clamp(0.0, 1.0)
        return torch.where(rain > 0, p, torch.zeros_like(p))

    def inverse(self, x: torch.Tensor, threshold: bool = True) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        rain = dbz_to_rain(x * DBZ_MAX, self.a, self.b)
        if not threshold:
            return rain
        # the tolerance keeps exactly-transformed 0.1 mm/h on the rainy side in float32
        return torch.where(x >= self.threshold - 1e-6, rain, torch.zeros_like(rain))


@TRANSFORMS.register("log")
class LogTransform(RainTransform):
    """x = (log10(R + eps) - log10(eps)) / (log10(r_max + eps) - log10(eps)), R = 0 -> 0."""

    name = "log"

    def __init__(self, eps: float = 0.01, r_max: float = 200.0) -> None:
        self.eps = float(eps)
        self.r_max = float(r_max)

    def _span(self) -> float:
        return math.log10(self.r_max + self.eps) - math.log10(self.eps)

    def forward(self, rain: torch.Tensor) -> torch.Tensor:
        rain = rain.clamp(min=0.0, max=self.r_max)
        return (torch.log10(rain + self.eps) - math.log10(self.eps)) / self._span()

    def inverse(self, x: torch.Tensor, threshold: bool = True) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        rain = 10.0 ** (x * self._span() + math.log10(self.eps)) - self.eps
        rain = rain.clamp(min=0.0)
        if not threshold:
            return rain
        return torch.where(rain >= RAIN_THRESHOLD_MM_H, rain, torch.zeros_like(rain))


def build_transform(spec: str | dict[str, Any] | RainTransform) -> RainTransform:
    """A transform from its name, its ``to_dict()`` or itself."""
    if isinstance(spec, RainTransform):
        return spec
    if isinstance(spec, str):
        return TRANSFORMS.build(spec)
    spec = dict(spec)
    return TRANSFORMS.build(spec.pop("name"), **spec)


def pixel_scale(rain: torch.Tensor) -> torch.Tensor:
    """The image-metric scale of DESIGN.md: clip(10 log10(200 R^1.6), 0, 60)/60, R = 0 -> 0.

    NaN (no coverage) stays NaN.
    """
    p = DBZTransform().forward(torch.nan_to_num(rain, nan=0.0))
    return torch.where(torch.isnan(rain), rain, p)
