"""The models of an evaluation: a :class:`~nowcast.models.spec.ModelSpec` plus the runner's own keys."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nowcast.models.cards import card_forecast_args
from nowcast.models.spec import ModelSpec, short_form


@dataclass(frozen=True)
class EvaluatedModel(ModelSpec):
    """A model of an evaluation: its :class:`~nowcast.models.spec.ModelSpec` plus the runner's own keys.

    Written like any model spec (``"steps:members=8"``,
    ``"diffusion:sampler=ddim,steps=50,checkpoint=path.pt,max_windows=4"`` or a mapping with these
    keys beside ``name``/``args``/``checkpoint``). The runner's keys: ``members`` (overrides the
    run's), ``max_windows`` (score this model on a subset of the run's windows: the sample cases
    first, the rainiest, then evenly spaced ones; see :meth:`EvaluationRunner.model_positions`,
    stated in the report), ``label`` (its name in the report; default: the name and args) and
    ``panels`` (default true; ``false``: no extra forecasts of the sample cases outside the
    model's subset, for samplers too slow to spend a forecast on a picture).
    """

    members: int | None = None
    max_windows: int | None = None
    label: str = ""
    panels: bool = True

    own_keys: ClassVar[tuple[str, ...]] = ("checkpoint", "members", "max_windows", "label", "panels")

    @classmethod
    def validate(cls, values: dict[str, Any]) -> None:
        for key in ("members", "max_windows"):
            value = values.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{key} must be a positive integer")
        if not isinstance(values.get("panels", True), bool):
            raise ValueError("panels must be true or false")
        values["label"] = str(values.get("label") or short_form(values["name"], values.get("args") or {}))

    @property
    def slug(self) -> str:
        """A file-name-safe form of the label (the model's folder under ``models/``)."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label).strip("_") or self.name


#: what names a model of an evaluation: a parsed one, a model spec, its short form or its mapping
SpecLike = EvaluatedModel | ModelSpec | str | Mapping[str, Any]


def parse_specs(specs: Sequence[SpecLike]) -> list[EvaluatedModel]:
    """The specs of one run; ``ValueError`` for a malformed one or two with one label."""
    parsed = [EvaluatedModel.parse(s) for s in specs]
    labels = [s.label for s in parsed]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ValueError(f"two models share the label(s) {sorted(dup)}; give one a label=...")
    return parsed


def weights_fingerprint(spec: EvaluatedModel) -> list[dict[str, str | None]]:
    """Name and SHA-256 of each checkpoint file ``spec`` loads (None for a missing file), so a
    resumed run re-scores a model whose weights were retrained; [] for models without weights."""
    from nowcast.models.checkpoint import file_sha256

    return [{"file": path.name, "sha256": file_sha256(path) if path.is_file() else None}
            for path in spec.weight_files()]


def card_settings(spec: EvaluatedModel) -> dict[str, Any]:
    """The forecast arguments the model card of ``spec``'s checkpoint adds to the spec's own
    (``{}`` without a card, or when the spec sets them all), so a resumed run re-scores a model
    whose card changed how it forecasts (:meth:`LearnedForecaster.from_checkpoint`)."""
    files = spec.weight_files()
    card = card_forecast_args(files[0]) if files else {}
    return {key: value for key, value in card.items() if key not in spec.args}
