"""A tiny synthetic store and `nowcast train` configs shared by the training tests (not a test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from nowcast.data.synthetic import write_synthetic_store
from nowcast.types import repo_root

N_OUT = 3


def frame_time(index: int, timestep_minutes: float) -> str:
    """The time of frame ``index`` of the synthetic store (ISO)."""
    return str(np.datetime64("2024-06-01T12:00") + np.timedelta64(int(index * timestep_minutes), "m"))


def event(first: int, last: int, timestep_minutes: float) -> dict[str, str]:
    """The split event of frames ``first`` to ``last`` of the synthetic store."""
    return {"store": "synthetic", "start": frame_time(first, timestep_minutes),
            "end": frame_time(last, timestep_minutes)}


def write_data_config(tmp: Path, pixel_size_m: float = 2000.0, timestep_minutes: float = 5.0) -> Path:
    """A 32 px synthetic store (of ``pixel_size_m`` pixels and ``timestep_minutes`` frames) with
    train (frames 0-10) and val (11-19) events, and its data config."""
    write_synthetic_store(tmp / "synthetic.zarr", n_frames=20, height=32, width=32, pixel_size_m=pixel_size_m,
                          timestep_minutes=timestep_minutes)
    config = {
        "store_root": str(tmp),
        "stores": {"synthetic": "synthetic.zarr"},
        "splits": {"train": [event(0, 10, timestep_minutes)], "val": [event(11, 19, timestep_minutes)]},
        "n_in": 4, "n_out": N_OUT, "crop_size": 32, "eval_crop_size": 32, "batch_size": 2,
        "num_workers": 0, "with_motion": True, "samples_per_epoch": 4,
    }
    path = tmp / "data.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_train_config(tmp: Path, every_n_steps: int = 2, logged: bool = False) -> Path:
    """configs/train/diffusion.yaml shrunk to a CPU-sized model, saving every ``every_n_steps``;
    ``logged``: the shipped configs' layout (a logger, so every run writes its checkpoints and exports
    under a new ``lightning_logs/version_N``) instead of fixed folders without a logger."""
    config = yaml.safe_load((repo_root() / "configs/train/diffusion.yaml").read_text())
    config["model"]["init_args"]["model"]["args"].update(dim=16, depth=1, heads=2, channels=[8, 16])
    config["model"]["init_args"].update(n_out=N_OUT, val_steps=2, val_members=1)
    config.pop("data", None)
    trainer = config["trainer"]
    trainer.update(accelerator="cpu", precision="32-true", val_check_interval=2, log_every_n_steps=1,
                   default_root_dir=str(tmp / "runs"), enable_progress_bar=False, logger=logged,
                   num_sanity_val_steps=0, enable_model_summary=False)
    for cb in trainer["callbacks"]:
        if "every_n_train_steps" in cb.get("init_args", {}):
            cb["init_args"]["every_n_train_steps"] = every_n_steps
        if logged:
            continue
        if "ModelCheckpoint" in cb["class_path"]:
            cb["init_args"]["dirpath"] = str(tmp / "runs" / "checkpoints")
        if "ExportCheckpoint" in cb["class_path"]:
            cb["init_args"]["dirpath"] = str(tmp / "runs" / "export")
    trainer["callbacks"] = [cb for cb in trainer["callbacks"] if "LearningRate" not in cb["class_path"]]
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_error_line(capsys) -> str:
    """The stderr of a refused `nowcast train`: exactly one error line, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("nowcast train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
