"""Train/validation/test splits by whole events.

An event is a store name and a closed time range, written in configs as::

    {store: mch, start: "2016-07-11T00:00", end: "2016-07-11T23:59"}

``start``/``end`` are UTC times (ISO 8601, quoted in YAML). A date without a time means the
whole day: as ``start`` it is 00:00, as ``end`` it is the last instant of that day. Leaving both
out takes the whole store. A window belongs to a split only if **all** its frames lie inside one
event of that split, so no window mixes splits; a config that gives overlapping time ranges of
one store to two splits is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nowcast.data.windows import Window

SPLITS = ("train", "val", "test")
_MIN = np.datetime64("1700-01-01T00:00", "ns")  # datetime64[ns] spans 1678..2262
_MAX = np.datetime64("2200-01-01T00:00", "ns")


class SplitError(ValueError):
    """An event list that is malformed or that lets data leak between splits."""


def _as_time(value: Any, end: bool) -> np.datetime64:
    if value is None:
        return _MAX if end else _MIN
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = value.isoformat()
    text = str(value).strip().replace("Z", "").replace(" ", "T")
    try:
        t = np.datetime64(text, "ns")
    except ValueError as err:
        raise SplitError(f"not an ISO time: {value!r}") from err
    if end and len(text) == 10:  # a bare date ("2016-07-11" or "2016-07-11Z"): the whole day
        t = t + np.timedelta64(1, "D") - np.timedelta64(1, "ns")
    return t


@dataclass(frozen=True)
class Event:
    """All frames of ``store`` with ``start <= time <= end`` (datetime64[ns], UTC)."""

    store: str
    start: np.datetime64
    end: np.datetime64

    @classmethod
    def from_config(cls, item: Mapping[str, Any] | Event) -> Event:
        if isinstance(item, Event):
            return item
        if not isinstance(item, Mapping) or "store" not in item:
            raise SplitError(f"an event needs at least a 'store', got {item!r}")
        unknown = set(item) - {"store", "start", "end", "name"}
        if unknown:
            raise SplitError(f"unknown event keys {sorted(unknown)} in {dict(item)!r} "
                             "(known: store, start, end, name)")
        ev = cls(str(item["store"]), _as_time(item.get("start"), False), _as_time(item.get("end"), True))
        if ev.end < ev.start:
            raise SplitError(f"event ends before it starts: {dict(item)!r}")
        return ev

    def contains(self, window: Window) -> bool:
        return window.store == self.store and self.start <= window.first and window.end <= self.end

    def overlaps(self, other: Event) -> bool:
        return self.store == other.store and self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.store} {self.start} .. {self.end}"


def parse_splits(config: Mapping[str, Iterable[Mapping[str, Any]] | None]) -> dict[str, list[Event]]:
    """``{split: [event config, ...]}`` -> ``{split: [Event, ...]}``, refusing leakage.

    Split names are free (typically ``train``, ``val``, ``test``). Raises :class:`SplitError`
    if two different splits hold overlapping time ranges of the same store.
    """
    splits = {str(name): [Event.from_config(e) for e in (events or [])] for name, events in config.items()}
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for ea in splits[a]:
                for eb in splits[b]:
                    if ea.overlaps(eb):
                        raise SplitError(f"splits {a!r} and {b!r} overlap: [{ea}] and [{eb}]; "
                                         "every event may belong to one split only")
    return splits


def select_windows(windows: Sequence[Window], events: Sequence[Event]) -> list[Window]:
    """The windows lying wholly inside one of ``events`` (order kept)."""
    return [w for w in windows if any(ev.contains(w) for ev in events)]


def split_windows(
    windows: Sequence[Window], splits: Mapping[str, Sequence[Event]]
) -> dict[str, list[Window]]:
    """``{split: windows of that split}`` for already validated splits."""
    return {name: select_windows(windows, events) for name, events in splits.items()}


def stores_used(splits: Mapping[str, Sequence[Event]]) -> set[str]:
    return {ev.store for events in splits.values() for ev in events}
