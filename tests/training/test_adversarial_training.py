"""`nowcast train fit` of the adversarial stage as configured (configs/train/adversarial.yaml), on CPU:
precomputed diffusion inputs, a few steps, an export the diffusion forecaster samples with; with the
GAN objective, and with the scoring rule scored as the forecast is issued
(configs/train/scoring-rule.yaml + perturbed-scoring-rule.yaml: one step, members displaced by
their motion errors, which the precomputed items must carry), and scored at the full resolution
(+ issued-scoring-rule.yaml: the precomputed items also carry the full-resolution fields)."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from tiny_setup import N_OUT, write_data_config

from nowcast.commands.train import main as train_main
from nowcast.models.checkpoint import load_checkpoint
from nowcast.models.diffusion import DiffusionForecaster
from nowcast.training.diffusion_task import DiffusionTask
from nowcast.types import repo_root

#: extra stage configs on top of adversarial.yaml, and the sampler's step count they train
STAGES = {"gan": ([], 4), "perturbed-scoring-rule": (["scoring-rule.yaml", "perturbed-scoring-rule.yaml"], 1),
          "issued-scoring-rule": (["scoring-rule.yaml", "perturbed-scoring-rule.yaml",
                                   "issued-scoring-rule.yaml"], 1)}


@pytest.mark.parametrize("stage", list(STAGES))
def test_adversarial_stage_trains_on_precomputed_inputs(tmp_path, caplog, stage):
    torch.set_num_threads(1)
    extra, steps = STAGES[stage]
    data = write_data_config(tmp_path)
    recipe = yaml.safe_load((repo_root() / "configs/train/diffusion.yaml").read_text())["model"]["init_args"]
    recipe["model"]["args"].update(dim=16, depth=1, heads=2, channels=[8, 16])
    base = DiffusionTask(**{**recipe, "n_out": N_OUT})
    base_path = base.export(tmp_path / "diffusion.pt")
    config = yaml.safe_load((repo_root() / "configs/train/adversarial.yaml").read_text())
    assert config["model"]["init_args"]["precompute"], "the CPU stage precomputes like its base recipe"
    config["model"]["init_args"].update(z_dim=4, disc_channels=8, disc_depth=2)
    config.pop("data")
    trainer = config["trainer"]
    trainer.update(val_check_interval=2, default_root_dir=str(tmp_path / "runs"), enable_progress_bar=False,
                   logger=False, num_sanity_val_steps=0, enable_model_summary=False)
    for cb in trainer["callbacks"]:
        if "ExportCheckpoint" in cb["class_path"]:
            cb["init_args"]["dirpath"] = str(tmp_path / "export")
        if "ModelCheckpoint" in cb["class_path"]:
            cb["init_args"]["dirpath"] = str(tmp_path / "checkpoints")
    (tmp_path / "adversarial.yaml").write_text(yaml.safe_dump(config))
    stage_configs = [arg for name in extra for arg in ("--config", str(repo_root() / "configs/train" / name))]
    with caplog.at_level(logging.INFO, logger="nowcast.training.prepared"):
        assert train_main(["fit", "--config", str(tmp_path / "adversarial.yaml"), *stage_configs,
                           "--data", str(data),
                           "--model.init_args.model.checkpoint", str(base_path),  # the spec's base model
                           "--trainer.default_root_dir", str(tmp_path / "runs"),
                           "--trainer.max_steps", "4"]) == 0
    assert any("precomputed the diffusion inputs" in r.getMessage() for r in caplog.records)
    export = tmp_path / "export" / "diffusion-adversarial-last.pt"
    assert load_checkpoint(export)["hparams"]["steps"] == steps
    model = DiffusionForecaster.from_checkpoint(base_path, sampler="adversarial", steps=steps,
                                                sampler_checkpoint=export)
    seed = torch.Generator().manual_seed(0)
    rain = model.forecast(torch.rand(1, 4, 32, 32) * 5, N_OUT, members=2, generator=seed)
    assert rain.shape == (1, 2, N_OUT, 32, 32) and torch.isfinite(rain).all()
