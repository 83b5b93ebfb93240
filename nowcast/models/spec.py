"""One way to name a model and its settings: :class:`ModelSpec`, read by every command.

``nowcast forecast --model``, the model list of ``nowcast evaluate`` and the fallback chain of
``nowcast operate`` all take the same spec, in one of two forms:

- the short string ``name[:key=value,key=value...]``, e.g. ``"steps:ar_order=1"`` or
  ``"diffusion:sampler=ddim,steps=10,checkpoint=path.pt"`` (values read as YAML scalars:
  ``10`` -> int, ``true`` -> bool, ``null`` -> None; a value cannot hold a comma);
- the YAML mapping ``{name: diffusion, checkpoint: path.pt, args: {sampler: ddim, steps: 10}}``,
  inline in a config file or as a file of its own, named by its path (``my-model.yaml``): one
  file that ``forecast --model``, ``evaluate --models`` and ``operate --models`` all take.

``name`` is a registry name (``nowcast models`` lists them), ``args`` the forecaster's constructor
arguments, ``checkpoint`` the weights of a learned model (None: its shipped file, whose model card
may add the settings it was scored with: :attr:`nowcast.models.cards.Card.forecast_args`).
A command that needs settings of its own (evaluation's ``members``, ``label`` ...) extends the
class, so the short form carries them as further keys.

Training (``nowcast train``) takes the same spec as its task's ``model``: there ``args`` are what
the network is built with (what its checkpoint will store, e.g.
:class:`~nowcast.models.diffusion.settings.DiffusionNetwork`) and ``checkpoint`` the weights the
fit starts from; one setting is one override, ``--model.init_args.model.args.coarsen 1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

S = TypeVar("S", bound="ModelSpec")

NAME = re.compile(r"[A-Za-z0-9_.-]+")
#: a spec that ends so is the path of a YAML file holding the spec
SPEC_FILE_SUFFIXES = (".yaml", ".yml")


def short_form(name: str, args: Mapping[str, Any]) -> str:
    """``name:key=value,...`` (just ``name`` without args)."""
    return f"{name}:{','.join(f'{k}={v}' for k, v in args.items())}" if args else name


class ModelSpecError(ValueError):
    """A model spec that cannot be read (the message names the spec and what is wrong)."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered forecaster ``name``, its constructor ``args`` and its ``checkpoint``."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    #: keys of the short form that are fields of the spec, not constructor arguments
    own_keys: ClassVar[tuple[str, ...]] = ("checkpoint",)

    @classmethod
    def parse(cls: type[S], value: str | Mapping[str, Any] | ModelSpec) -> S:
        """A spec from its short string, its mapping or another spec (:class:`ModelSpecError` if bad)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, ModelSpec):
            value = value.to_dict()
        if isinstance(value, Mapping):
            return cls._from_mapping(value)
        if str(value).strip().endswith(SPEC_FILE_SUFFIXES):
            return cls._from_file(Path(str(value).strip()))
        return cls._from_text(str(value))

    @classmethod
    def _from_file(cls: type[S], path: Path) -> S:
        """The spec written in the YAML file ``path`` (a mapping or a short form)."""
        if not path.is_file():
            raise ModelSpecError(f"model spec file {path} not found")
        try:
            content = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ModelSpecError(f"model spec file {path} is not readable YAML: {err}") from err
        if not isinstance(content, (str, Mapping)):
            raise ModelSpecError(f"model spec file {path} holds neither a mapping nor 'name:key=value,...'")
        return cls.parse(content)

    @classmethod
    def _from_text(cls: type[S], text: str) -> S:
        name, _, rest = text.strip().partition(":")
        if not NAME.fullmatch(name):
            raise ModelSpecError(f"bad model spec {text!r}: expected 'name' or 'name:key=value,key=value'")
        args: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, raw = item.partition("=")
            if not eq or not key.strip():
                raise ModelSpecError(f"bad model spec {text!r}: {item!r} is not key=value")
            args[key.strip()] = yaml.safe_load(raw.strip()) if raw.strip() else None
        own = {k: args.pop(k) for k in cls.own_keys if k in args}
        return cls._build(text, name=name, args=args, **own)

    @classmethod
    def _from_mapping(cls: type[S], mapping: Mapping[str, Any]) -> S:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown or "name" not in mapping:
            what = f"unknown key(s) {unknown}" if unknown else "no 'name'"
            raise ModelSpecError(f"bad model spec {dict(mapping)!r}: {what}; "
                                 f"keys: {', '.join(sorted(known))}")
        if not isinstance(mapping["name"], str) or not NAME.fullmatch(mapping["name"]):
            raise ModelSpecError(f"bad model spec {dict(mapping)!r}: name must be a registry name")
        if not isinstance(mapping.get("args") or {}, Mapping):
            raise ModelSpecError(f"bad model spec {dict(mapping)!r}: args must be a mapping")
        values = dict(mapping)
        values["args"] = dict(values.get("args") or {})
        return cls._build(dict(mapping), **values)

    @classmethod
    def _build(cls: type[S], shown: object, **values: Any) -> S:
        """The spec of ``values`` after :meth:`validate`; errors name the spec as written (``shown``)."""
        if values.get("checkpoint") is not None:
            values["checkpoint"] = str(values["checkpoint"])
        try:
            cls.validate(values)
        except ValueError as err:
            raise ModelSpecError(f"bad model spec {shown!r}: {err}") from err
        return cls(**values)

    @classmethod
    def validate(cls, values: dict[str, Any]) -> None:
        """Refuse bad values of the spec's own fields (``ValueError``) and fill in the ones derived
        from others; subclasses add theirs (the base spec has none)."""

    def __str__(self) -> str:
        """The short form (``checkpoint`` as its last key)."""
        own = {"checkpoint": self.checkpoint} if self.checkpoint else {}
        return short_form(self.name, {**self.args, **own})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> type:
        """The forecaster class, after refusing an unknown name or bad arguments without loading
        anything (:class:`nowcast.models.base.ModelArgumentError`)."""
        from nowcast.models.base import check_model

        return check_model(self.name, self.checkpoint, **self.args)

    def load(self) -> Any:
        """The forecaster this spec names (:func:`nowcast.models.load_forecaster`)."""
        from nowcast.models import load_forecaster

        return load_forecaster(self.name, self.checkpoint, **self.args)

    def weight_files(self) -> list[Any]:
        """The checkpoint files :meth:`load` would read, found without loading them."""
        from nowcast.models import weight_files

        return weight_files(self.name, self.checkpoint, **self.args)
