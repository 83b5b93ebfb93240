"""The one-line model cards of the shipped checkpoints (``nowcast/checkpoints/cards.yaml``).

A card belongs to one file, identified by its SHA-256: a checkpoint the user trained, or a
shipped file replaced without updating its card, has no card, so no claim is made about it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nowcast.models.checkpoint import file_sha256

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
CARDS_FILE = CHECKPOINT_DIR / "cards.yaml"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Card:
    """``file``: name in :data:`CHECKPOINT_DIR`; ``summary``: one line; ``below_extrapolation``: the
    measured reason the model should not be used for real forecasts, or "" if it scores as well as
    pysteps extrapolation; ``forecast_args``: the forecaster arguments the card's scores were made
    with, the defaults of every forecast from this very file (arguments given override them)."""

    file: str
    sha256: str
    summary: str
    below_extrapolation: str = ""
    forecast_args: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def shipped_cards() -> dict[str, Card]:
    """file name -> :class:`Card`, as written in ``cards.yaml`` ({} if the file is missing)."""
    if not CARDS_FILE.is_file():
        return {}
    raw = yaml.safe_load(CARDS_FILE.read_text()) or {}
    return {name: Card(file=name, **{k: v if isinstance(v, dict) else " ".join(str(v).split())
                                     for k, v in entry.items()})
            for name, entry in raw.items()}


def card_of(path: str | Path) -> Card | None:
    """The card of the checkpoint at ``path`` if it is a shipped file with its card's SHA-256."""
    path = Path(path)
    card = shipped_cards().get(path.name)
    if card is None or not path.is_file():
        return None
    st = path.stat()  # the hash is cached per file version: a replaced file is hashed again
    return card if _sha256(str(path.resolve()), st.st_mtime_ns, st.st_size) == card.sha256 else None


@functools.lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def card_forecast_args(path: str | Path | None) -> dict[str, Any]:
    """The arguments the card of the checkpoint at ``path`` was scored with ({} without a card)."""
    card = card_of(path) if path else None
    return dict(card.forecast_args) if card else {}


_warned: set[str] = set()


def skill_notice(path: str | Path | None) -> str | None:
    """What the card of ``path`` says against using it (None if nothing); logged once per file and
    process, so a batch of forecasts says it once."""
    card = card_of(path) if path else None
    if card is None or not card.below_extrapolation:
        return None
    if card.file not in _warned:
        _warned.add(card.file)
        log.warning("%s: %s — use extrapolation or steps for real forecasts", card.file,
                    card.below_extrapolation)
    return card.below_extrapolation
