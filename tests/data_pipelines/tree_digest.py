"""One hash of every file below a folder (names and bytes): "the store did not change" in a test."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
