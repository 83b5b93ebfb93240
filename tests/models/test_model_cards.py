"""The one-line model cards of the shipped checkpoints (nowcast/checkpoints/cards.yaml): each belongs to
its file, and a model below extrapolation says so once in the log and in every forecast file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from nowcast.io.cf import Provenance
from nowcast.models import load_forecaster
from nowcast.models.cards import CHECKPOINT_DIR, card_of, shipped_cards, skill_notice
from nowcast.models.checkpoint import file_sha256


def test_every_shipped_checkpoint_has_its_card() -> None:
    files = sorted(p.name for p in CHECKPOINT_DIR.glob("*.pt"))
    assert sorted(shipped_cards()) == files
    for name in files:
        card = card_of(CHECKPOINT_DIR / name)
        assert card is not None, f"{name} changed: update its sha256 and scores in cards.yaml"
        assert card.summary


def test_a_retrained_file_has_no_card(tmp_path: Path) -> None:
    copy = tmp_path / "diffusion.pt"
    shutil.copy(CHECKPOINT_DIR / "diffusion.pt", copy)
    assert card_of(copy) is not None  # same bytes, same card
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert file_sha256(copy) != shipped_cards()["diffusion.pt"].sha256
    assert card_of(copy) is None and skill_notice(copy) is None


@pytest.mark.parametrize("name", ["simvp", "diffusion"])
def test_below_extrapolation_is_said_in_the_log_once_and_in_the_file(name: str, caplog) -> None:
    card = shipped_cards()[f"{name}.pt"]
    if not card.below_extrapolation:
        pytest.skip(f"{name}.pt meets extrapolation: nothing to say")
    import nowcast.models.cards as cards

    cards._warned.discard(card.file)
    with caplog.at_level(logging.WARNING, logger="nowcast.models.cards"):
        first = load_forecaster(name)
        load_forecaster(name)
    said = [r for r in caplog.records if "below pysteps extrapolation" in r.getMessage()]
    assert len(said) == 1
    attrs = Provenance(forecaster=first.describe(), input_store="s.zarr",
                       input_times=[np.datetime64("2016-07-11T16:00")]).attributes()
    assert attrs["skill_notice"] == card.below_extrapolation
    assert attrs["checkpoint"] == str(CHECKPOINT_DIR / f"{name}.pt")
    assert attrs["checkpoint_sha256"] == card.sha256


def test_a_physical_model_carries_no_notice() -> None:
    attrs = Provenance(forecaster=load_forecaster("extrapolation").describe(), input_store="s.zarr",
                       input_times=[np.datetime64("2016-07-11T16:00")]).attributes()
    assert "skill_notice" not in attrs and attrs["checkpoint"] == "none"
