"""A few steps of 2-process DDP on CPU (gloo) through `nowcast train fit`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tiny_setup import write_data_config, write_train_config

from nowcast.models.checkpoint import load_checkpoint
from nowcast.types import repo_root


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    data, config = write_data_config(tmp_path), write_train_config(tmp_path)
    cmd = [sys.executable, "-m", "nowcast.cli", "train", "fit", "--config", str(config), "--data", str(data),
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "3"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run(cmd, cwd=repo_root(), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    last = load_checkpoint(tmp_path / "runs" / "export" / "diffusion-last.pt")
    assert last["training"]["world_size"] == 2 and last["training"]["global_step"] == 3
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").exists()
