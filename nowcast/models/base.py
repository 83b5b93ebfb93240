"""The Forecaster contract: the only thing evaluation, the CLI and the operational job use.

``forecast(past, n_out, members, generator=None, motion=None) -> rain``

- ``past``: (B, T_in, H, W) float tensor, mm/h on the store's grid; NaN where not covered.
- ``motion`` (optional): (B, 2, H, W) motion field [u (+x), v (+y)] in pixels per time step,
  e.g. from a motion cache (:mod:`nowcast.data.motion_cache`). Models that advect
  (``uses_motion``) use it instead of estimating the optical flow themselves, so every model
  of an evaluation can share one motion and the models run where pysteps is not installed;
  the others ignore it.
- returns:  (B, M, T_out, H, W) float32 tensor, mm/h, finite and >= 0, on the same grid
  and device; ``M == members`` for ensemble models, ``M == 1`` for deterministic ones.

Subclasses implement :meth:`Forecaster._forecast`, which receives ``past`` with NaN already
replaced by 0 and ``motion`` checked (or None). Learned forecasters load from checkpoints
(see ``checkpoint.py``) and expose what they were built for through ``window``, ``grid`` and
``transform``.

Every entry point binds a model to the data before its first forecast, once per store
(:func:`bind_to_store`, which calls :meth:`Forecaster.bind`): learned models refuse a time step,
pixel size or frame count they were not trained for; physical models take what they need (pixel
size, time step) from the store. :meth:`Forecaster.check_arguments` refuses bad constructor
arguments before anything is built, so a run with several models fails before the first runs.
"""

from __future__ import annotations

import difflib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from nowcast.registry import Registry, UnknownNameError
from nowcast.types import GridSpec, WindowSpec

FORECASTERS: Registry[type[Forecaster]] = Registry("forecaster")


class DoesNotFitError(ValueError):
    """A model asked to run on data it was not built for; the message names both sides."""


class ModelArgumentError(ValueError):
    """An unknown model name or an argument the model cannot take (found before anything runs)."""


def check_model(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> type[Forecaster]:
    """The class ``load_forecaster(name, checkpoint, **kwargs)`` would build, after refusing an
    unknown name (listing the known ones) and arguments it would fail on
    (:meth:`Forecaster.check_arguments`) with :class:`ModelArgumentError`; runs no model."""
    from nowcast.models import import_all

    import_all()
    try:
        cls = FORECASTERS.get(name)
        cls.check_arguments(checkpoint, **kwargs)
    except (UnknownNameError, ValueError) as err:
        raise ModelArgumentError(str(err)) from err
    return cls


class Forecaster(ABC):
    #: registry name, set by subclasses
    name: str = ""
    #: one line for ``nowcast models``
    summary: str = ""
    #: True if the model always returns one member
    deterministic: bool = True
    #: number of past frames needed (the minimum; extra leading frames are ignored)
    n_in: int = 2
    #: True if the model advects along a motion field (and so uses ``forecast(motion=...)``)
    uses_motion: bool = False

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    @abstractmethod
    def _forecast(
        self, past: torch.Tensor, n_out: int, members: int, generator: torch.Generator | None,
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        """``past`` (B, T_in, H, W) mm/h without NaN (and ``motion`` (B, 2, H, W) px/step or
        None: estimate it) -> (B, M, T_out, H, W) mm/h."""

    def forecast(
        self,
        past: torch.Tensor,
        n_out: int,
        members: int = 1,
        generator: torch.Generator | None = None,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Forecast ``n_out`` frames; see the module docstring for shapes and units."""
        if past.ndim != 4:
            raise ValueError(f"past must be (B, T_in, H, W), got shape {tuple(past.shape)}")
        if past.shape[1] < self.n_in:
            raise ValueError(f"{self.name} needs {self.n_in} past frames, got {past.shape[1]}")
        if n_out < 1 or members < 1:
            raise ValueError("n_out and members must be >= 1")
        past = torch.nan_to_num(past.float(), nan=0.0).clamp(min=0.0)[:, -self.n_in:]
        b, _, h, w = past.shape
        if motion is not None:
            if tuple(motion.shape) != (b, 2, h, w):
                raise ValueError(f"motion must be (B, 2, H, W) = {(b, 2, h, w)} like past, "
                                 f"got {tuple(motion.shape)}")
            motion = motion.float().to(self.device)
            if not torch.isfinite(motion).all():
                raise ValueError("motion holds NaN or inf")
        with torch.no_grad():
            rain = self._forecast(past.to(self.device), n_out, members, generator, motion)
        expected_m = 1 if self.deterministic else members
        if tuple(rain.shape) != (b, expected_m, n_out, h, w):
            raise RuntimeError(
                f"{self.name} returned {tuple(rain.shape)}, expected {(b, expected_m, n_out, h, w)}"
            )
        return torch.nan_to_num(rain.float(), nan=0.0).clamp(min=0.0)

    @classmethod
    def check_arguments(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> None:
        """Refuse what ``load_forecaster(cls.name, checkpoint, **kwargs)`` would fail on, without
        running anything: a checkpoint for a model without weights, an argument ``__init__`` does
        not take or refuses. Raises ``ValueError`` with one line naming the argument and the fix.

        This base version builds the model once (models without weights are cheap to build)."""
        if checkpoint is not None:
            raise ValueError(f"{cls.name} has no weights and takes no checkpoint; "
                             f"drop checkpoint={checkpoint}")
        refuse_unknown_arguments(cls, kwargs)
        try:
            cls(**kwargs)
        except ValueError as err:
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise ValueError(f"{cls.name}({given}): {err}") from err

    def bind(self, window: WindowSpec | None = None, grid: GridSpec | None = None) -> Forecaster:
        """Fit the model to the data it will run on, before its first forecast: ``window`` (the
        past frames given per forecast, lead times asked for, time step) and ``grid`` (pixel size,
        frame size). Raises ``ValueError`` naming what the model needs and what the data has.

        The base class needs nothing but enough past frames: persistence and extrapolation work
        in pixels per time step, whatever their size and length. Returns ``self``.
        """
        if window is not None and window.n_in < self.n_in:
            raise DoesNotFitError(f"{self.name} needs {self.n_in} past frames, the data gives {window.n_in}; "
                                  f"give it at least {self.n_in}")
        return self

    def to(self, device: str | torch.device) -> Forecaster:
        """Move learned weights to ``device`` (no-op for models without weights)."""
        self.device = torch.device(device)
        return self

    def describe(self) -> dict[str, Any]:
        """Provenance for forecast files and reports (model name, checkpoint, settings)."""
        return {"model": self.name, "deterministic": self.deterministic, "n_in": self.n_in}


def usable_device(name: str) -> torch.device:
    """The torch device ``name`` ("cpu", "cuda", "cuda:1", ...) if forecasters can run on it here;
    ``ValueError`` in one line otherwise: a name torch does not know, a GPU this machine lacks (no
    driver, an index past the last GPU) or a backend torch cannot allocate on."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:<index>") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            have = f"{count} CUDA GPU(s), cuda:0..cuda:{count - 1}" if count else "no CUDA GPU"
            raise ValueError(f"device {name!r} is not available: this machine has {have}; use cpu")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError, NotImplementedError) as err:
            raise ValueError(f"device {name!r} is not available here ({type(err).__name__} allocating on "
                             "it); use cpu or cuda") from None
    return device


def window_of(forecaster: Forecaster, n_out: int = 12, timestep_minutes: float = 5.0) -> WindowSpec:
    return WindowSpec(n_in=forecaster.n_in, n_out=n_out, timestep_minutes=timestep_minutes)


def bind_to_store(forecaster: Forecaster, store: Mapping[str, Any], n_out: int, n_in: int | None = None,
                  shape: tuple[int, int] | None = None) -> Forecaster:
    """:meth:`Forecaster.bind` to a store as ``nowcast.data.store.describe_store`` describes it
    (its ``timestep_minutes`` and ``pixel_size_m``; ``path`` names it in a refusal).

    Args:
        n_out: lead times that will be asked for.
        n_in: past frames the data gives per forecast (None: as many as the model needs).
        shape: (H, W) of the frames the model will see (a crop of the store's grid), if known.

    Raises :class:`DoesNotFitError`: "<model> cannot run on <store>: <what differs; the fix>".
    """
    given = forecaster.n_in if n_in is None or n_in >= forecaster.n_in else n_in
    window = WindowSpec(n_in=given, n_out=n_out, timestep_minutes=float(store["timestep_minutes"]))
    height, width = shape if shape is not None else (None, None)
    grid = GridSpec(pixel_size_m=float(store["pixel_size_m"]), height=height, width=width)
    try:
        return forecaster.bind(window, grid)
    except ValueError as err:
        where = store.get("path") or "this store"
        raise DoesNotFitError(f"{forecaster.name} cannot run on {where}: {err}") from err


def whole_number(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` of the constructor argument ``name`` if it is a whole number in ``low``..``high``
    (no upper bound if None), else ``ValueError`` naming the argument and the range (for
    :meth:`Forecaster.check_arguments`, which builds the model)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be a whole number {allowed}, got {value!r}")
    return value


def refuse_unknown_arguments(cls: type, kwargs: Mapping[str, Any], internal: Collection[str] = (),
                             what: str | None = None, noun: str = "argument") -> None:
    """Raise ``ValueError`` if ``cls(**kwargs)`` would get a keyword its ``__init__`` does not take
    (``internal``: parameters that are not the user's to give, e.g. a checkpoint's contents), as
    "<what>: unknown <noun> 'x' (did you mean 'y'?); known: ..." (``what``: default the model name)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if n != "self" and n not in internal
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in takes]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], takes, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    plural = "s" if len(unknown) > 1 else ""
    raise ValueError(f"{what or getattr(cls, 'name', cls.__name__)}: unknown {noun}{plural} "
                     f"{', '.join(map(repr, unknown))}{hint}; known: {', '.join(takes) if takes else 'none'}")
