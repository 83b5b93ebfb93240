"""Where and with what code an evaluation ran: the git state and the compute device, for ``run.json``."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import torch

from nowcast.types import repo_root


def git_state() -> dict[str, Any]:
    """The repository's commit and how many tracked files differ from it (``"unknown"`` outside git)."""
    def git(*args: str) -> str:
        res = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=20)
        return res.stdout.strip() if res.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "modified_tracked_files": len(status.splitlines()) if status else 0}


def device_name(device: torch.device) -> str:
    """A human-readable name of the machine's compute device (GPU model or CPU model and cores)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"CPU {cpu or platform.processor() or platform.machine()} ({os.cpu_count()} cores, " \
           f"{torch.get_num_threads()} torch threads)"
