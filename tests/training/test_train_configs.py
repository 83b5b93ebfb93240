"""Every shipped training config parses and builds its task through `nowcast train`'s CLI, and the
trained model spec takes one-setting overrides (`--model.init_args.model.args.<setting>`)."""

from __future__ import annotations

import warnings

import pytest
from lightning.pytorch.cli import LightningCLI

from nowcast.data.datamodule import NowcastDataModule
from nowcast.training.task import ForecastTask
from nowcast.types import repo_root

TRAIN = repo_root() / "configs" / "train"

#: config files in the order their headers give them -> the registry name each trains
CONFIGS = {
    ("diffusion.yaml",): "diffusion",
    ("diffusion.yaml", "gpu.yaml"): "diffusion",
    ("diffusion-transformer.yaml",): "diffusion",
    ("adversarial.yaml",): "diffusion",
    ("adversarial.yaml", "scoring-rule.yaml"): "diffusion",
    ("adversarial.yaml", "scoring-rule.yaml", "perturbed-scoring-rule.yaml", "issued-scoring-rule.yaml",
     "issued-few-parameters.yaml"): "diffusion",
    ("baselines.yaml", "simvp.yaml"): "simvp",
    ("baselines.yaml", "convlstm.yaml", "cpu.yaml"): "convlstm",
    ("baselines.yaml", "cgan.yaml"): "cgan",
}


def build(files: tuple[str, ...], *overrides: str, tmp_path) -> ForecastTask:
    """The task `nowcast train fit` would build from ``files`` (on the CPU, nothing run)."""
    args = ["--data", str(repo_root() / "configs/data/radar-mix.yaml")]
    for name in files:
        args += ["--config", str(TRAIN / name)]
    args += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.logger", "false",
             "--trainer.default_root_dir", str(tmp_path), *overrides]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = LightningCLI(ForecastTask, NowcastDataModule, subclass_mode_model=True, run=False, args=args,
                           auto_configure_optimizers=False)
    return cli.model


@pytest.mark.parametrize("files", list(CONFIGS), ids="+".join)
def test_every_training_config_builds_the_model_it_names(files, tmp_path):
    task = build(files, tmp_path=tmp_path)
    assert task.hparams["model"]["name"] == CONFIGS[files]
    if "scoring-rule.yaml" in files:  # the second file turns the GAN stage into the scoring-rule one
        assert task.hparams["objective"] == "crps" and task.discriminator is None
        assert task.generator.noise_maps > 0
    if "issued-few-parameters.yaml" in files:  # the latent injection, input and output layers alone
        trained = sum(p.numel() for p in task.generator.parameters() if p.requires_grad)
        assert 0 < trained < 0.01 * sum(p.numel() for p in task.generator.parameters())


def test_the_larger_gpu_size_is_four_overrides(tmp_path):
    """gpu.yaml's header: the recipe's network at 6.4 M parameters (the model card's GPU run)."""
    arg = "--model.init_args.model.args."
    sizes = [arg + "channels", "[48, 96, 144, 192]", arg + "dim", "144",
             arg + "depth", "3", arg + "heads", "6"]
    task = build(("diffusion.yaml", "gpu.yaml"), *sizes, tmp_path=tmp_path)
    assert sum(p.numel() for p in task.diffusion.denoiser.parameters()) == 6_405_804
    assert task.diffusion.coarsen == 4 and task.diffusion.residual_scale == 0.04  # the same recipe


def test_one_setting_of_the_trained_model_is_one_override(tmp_path):
    recipe = build(("diffusion.yaml",), tmp_path=tmp_path)
    shipped = str(repo_root() / "nowcast/checkpoints/diffusion.pt")
    ablated = build(("diffusion.yaml",), "--model.init_args.model.args.coarsen", "1",
                    "--model.init_args.model.checkpoint", shipped, tmp_path=tmp_path)
    assert (recipe.diffusion.coarsen, ablated.diffusion.coarsen) == (4, 1)
    # the other settings of the recipe stay as the file gives them
    assert ablated.diffusion.residual_scale == recipe.diffusion.residual_scale == 0.04
    assert ablated.net_hparams == recipe.net_hparams
    assert (recipe.init_from, ablated.init_from) == (None, shipped)
