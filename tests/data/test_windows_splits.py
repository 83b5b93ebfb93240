"""Windows never span a gap, a duplicate or an off-step time; splits never leak."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.data.splits import Event, SplitError, parse_splits, split_windows
from nowcast.data.windows import build_window_index, store_windows, valid_starts

STEP = np.timedelta64(5, "m")
T0 = np.datetime64("2024-01-01T00:00", "ns")


def brute_force_starts(times: np.ndarray, length: int) -> list[int]:
    return [i for i in range(len(times) - length + 1)
            if all(times[i + k] == times[i] + k * STEP for k in range(length))]


def test_valid_starts_match_brute_force_on_irregular_times() -> None:
    rng = np.random.default_rng(0)
    offsets = np.cumsum(rng.choice([0, 1, 1, 1, 1, 1, 2, 3], size=200))  # 0: duplicate, >1: gap
    times = T0 + STEP * offsets
    for length in (1, 3, 16):
        got = valid_starts(times, STEP, length)
        assert got.tolist() == brute_force_starts(times, length)
        for i in got:  # and, spelled out, nothing crosses a hole
            assert (np.diff(times[i:i + length]) == STEP).all()


def test_off_step_time_breaks_windows() -> None:
    times = T0 + STEP * np.arange(10)
    times[5] += np.timedelta64(1, "m")  # a frame at 25+1 min
    got = valid_starts(times, STEP, 3)
    assert not any(i <= 5 < i + 3 for i in got)
    assert got.tolist() == brute_force_starts(times, 3)


def test_stride_counts_from_each_run() -> None:
    times = T0 + STEP * np.array([0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11])
    assert valid_starts(times, STEP, 2, stride=2).tolist() == [0, 2, 4, 6, 8]


def test_store_with_missing_frames(holey_store) -> None:
    ds = xr.open_zarr(holey_store)
    windows = store_windows("holey", ds, n_in=2, n_out=3)
    times = ds.time.values
    # 20 frames minus frames 7 and 13: runs 0-6 (7 frames), 8-12 (5), 14-19 (6) -> 3 + 1 + 2 windows
    assert len(windows) == 6
    for w in windows:
        seg = times[w.start:w.start + 5]
        assert (np.diff(seg) == STEP).all()
        assert w.first == seg[0] and w.anchor == seg[1] and w.end == seg[-1]


def _events(*items):
    return [Event.from_config(i) for i in items]


def test_splits_never_share_a_window(syn_store) -> None:
    ds = xr.open_zarr(syn_store)
    splits = parse_splits({
        "train": [{"store": "s", "start": "2024-06-01T12:00", "end": "2024-06-01T13:10"}],
        "val": [{"store": "s", "start": "2024-06-01T13:15", "end": "2024-06-01T13:45"}],
        "test": [{"store": "s", "start": "2024-06-01T13:50", "end": "2024-06-01"}],  # bare date: whole day
    })
    index = build_window_index({"s": ds}, n_in=2, n_out=3)
    by_split = split_windows(index, splits)
    frames = {name: set() for name in by_split}
    for name, windows in by_split.items():
        assert windows, name
        for w in windows:
            frames[name].update(range(w.start, w.start + 5))
    assert not frames["train"] & frames["val"] and not frames["val"] & frames["test"]
    assert not frames["train"] & frames["test"]
    # windows straddling a boundary belong to no split: 30 frames, 26 windows, 4+4 straddle
    assert sum(len(v) for v in by_split.values()) == len(index) - 8


def test_overlapping_events_in_two_splits_are_refused() -> None:
    with pytest.raises(SplitError, match="overlap"):
        parse_splits({"train": [{"store": "knmi", "start": "2021-02-01", "end": "2021-02-03"}],
                      "test": [{"store": "knmi", "start": "2021-02-03T20:05", "end": "2021-02-03T23:00"}]})
    # the same times of another store, or overlapping events of one split, are fine
    parse_splits({"train": [{"store": "knmi", "start": "2021-02-01", "end": "2021-02-03"},
                            {"store": "knmi", "start": "2021-02-02", "end": "2021-02-04"}],
                  "test": [{"store": "mch", "start": "2021-02-03", "end": "2021-02-03"}]})


def test_bad_event_configs() -> None:
    with pytest.raises(SplitError, match="store"):
        _events({"start": "2021-01-01"})
    with pytest.raises(SplitError, match="unknown event keys"):
        _events({"store": "a", "begin": "2021-01-01"})
    with pytest.raises(SplitError, match="ends before"):
        _events({"store": "a", "start": "2021-01-02", "end": "2021-01-01"})
    (ev,) = _events({"store": "a", "end": "2021-01-01"})
    assert ev.end == np.datetime64("2021-01-01T23:59:59.999999999")


@pytest.mark.parametrize("end", ["2016-07-11", "2016-07-11Z"])
def test_an_end_given_as_a_bare_date_covers_the_whole_day(end) -> None:
    """With or without the UTC 'Z', a date alone as an event's end means its last instant."""
    event = Event.from_config({"store": "s", "start": "2016-07-11T20:45", "end": end})
    assert event.end == np.datetime64("2016-07-11T23:59:59.999999999", "ns")
