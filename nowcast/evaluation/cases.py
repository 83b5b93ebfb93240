"""Which windows an evaluation scores and shows: evenly spaced subsets and the sample cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    if k < 1:
        raise ValueError(f"max_windows must be >= 1, got {k}")
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def choose_cases(rain: Sequence[float], stores: Sequence[str], n_cases: int) -> list[int]:
    """Positions of the sample cases: the rainiest window of each store in turn, rainiest first."""
    order = sorted(range(len(rain)), key=lambda i: -rain[i])
    picked: list[int] = []
    for i in order:  # first one per store, then fill up with the rainiest remaining
        if len(picked) < n_cases and stores[i] not in {stores[j] for j in picked}:
            picked.append(i)
    picked += [i for i in order if i not in picked][: max(0, n_cases - len(picked))]
    return picked
