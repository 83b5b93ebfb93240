"""A disk that fills up under zarr, simulated (not a test).

On a real full disk (a tmpfs of a few MB) one chunk write of ``to_zarr`` fails with ENOSPC and the
error reaches the caller while zarr's other chunk writes, concurrent tasks of its own event loop, go
on landing: a temporary folder removed at once came back, and the rest of an append kept the disk
full. :func:`disk_fills_at` makes the ``n``-th chunk write fail and those after it land a moment
later, which is that behaviour.
"""

from __future__ import annotations

import asyncio
import errno
import itertools

import pytest

#: how long the chunk writes after the failing one take to land (s)
LATE_S = 0.2


def disk_fills_at(monkeypatch: pytest.MonkeyPatch, n: int = 1, array: str = "rain_rate") -> None:
    """From now on (until ``monkeypatch`` is undone) zarr's ``n``-th chunk write (0-based) of
    ``array`` fails with ENOSPC, and its later chunk writes land after :data:`LATE_S` (the chunks of
    one array are the writes zarr runs side by side; the order of the arrays is not fixed)."""
    import zarr.storage

    write = zarr.storage.LocalStore.set
    count = itertools.count()

    async def set_until_full(self, key, value):
        name = key.rpartition("/")[2]
        if key.split("/", 1)[0] != array or name.startswith(".") or name == "zarr.json":
            return await write(self, key, value)
        i = next(count)
        if i == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        if i > n:
            await asyncio.sleep(LATE_S)
        return await write(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_until_full)
