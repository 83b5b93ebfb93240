"""Fixtures for the ingest tests: a few real files per source from ../shared/radar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from radar_events import EVENTS


@pytest.fixture
def event_files(shared_radar: Path) -> Callable[..., list[Path]]:
    """``event_files(source, n, start=20)``: ``n`` consecutive files of one event (mid-event, rainy)."""

    def pick(source: str, n: int, start: int = 20) -> list[Path]:
        files = sorted(p for p in (shared_radar / EVENTS[source]).iterdir() if p.is_file())
        return files[start:start + n]

    return pick


@pytest.fixture
def mch_files(event_files) -> list[Path]:
    return event_files("mch", 6)
