"""Fine-tuning from a nowcast checkpoint (``init_from``): the weights arrive, another setup is refused."""

from __future__ import annotations

import pytest
import torch

from nowcast.models.checkpoint import CheckpointMismatchError, load_checkpoint
from nowcast.training.adversarial_task import AdversarialTask
from nowcast.training.baseline_tasks import CGANTask, RegressionTask
from nowcast.training.diffusion_task import DiffusionTask

TINY_DIFFUSION = {"n_out": 3, "dim": 16, "depth": 1, "heads": 2, "patch": 4}


def _scramble(task) -> None:
    """Give every initialised module random weights, so a load is visible."""
    with torch.no_grad():
        for modules in task.init_targets().values():
            for module in modules:
                for p in module.parameters():
                    p.normal_()


def _assert_holds(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    mine = module.state_dict()
    assert set(mine) == set(weights)
    for name, value in weights.items():
        torch.testing.assert_close(mine[name].float(), value.float(), rtol=0, atol=0, msg=name)


BUILDERS = {
    "diffusion": lambda **kw: DiffusionTask(**TINY_DIFFUSION, **kw),
    "simvp": lambda **kw: RegressionTask(model="simvp", size="tiny", n_out=3, **kw),
    "convlstm": lambda **kw: RegressionTask(model="convlstm", size="tiny", n_out=3, **kw),
    "cgan": lambda **kw: CGANTask(size="tiny", n_out=3, **kw),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_init_from_copies_every_module_and_records_it(name, tmp_path):
    source = BUILDERS[name]()
    _scramble(source)
    path = source.export(tmp_path / "source.pt")
    saved = load_checkpoint(path)["state_dict"]
    task = BUILDERS[name](init_from=str(path))
    first = next(iter(task.init_targets().values()))[0]
    with pytest.raises(AssertionError):  # a fresh task differs from the scrambled source...
        _assert_holds(first, saved[next(iter(task.init_targets()))])
    task.setup("fit")
    for key, modules in task.init_targets().items():
        for module in modules:  # ...until loaded (diffusion: the network and its average both)
            _assert_holds(module, saved[key])
    tuned = task.export(tmp_path / "tuned.pt")
    record = load_checkpoint(tuned)["training"]["init_from"]
    assert record["path"] == str(path) and len(record["sha256"]) == 64
    assert record["training"] == load_checkpoint(path)["training"]
    # a second continuation keeps the whole chain, so every stage's budget stays on file
    again = BUILDERS[name](init_from=str(tuned))
    again.setup("fit")
    chain = load_checkpoint(again.export(tmp_path / "again.pt"))["training"]["init_from"]
    assert chain["training"]["init_from"]["sha256"] == record["sha256"]


def test_validate_scores_the_init_from_weights(tmp_path):
    """``nowcast train validate --model.init_args.init_from F`` scores F, not fresh weights."""
    source = BUILDERS["convlstm"]()
    _scramble(source)
    path = source.export(tmp_path / "source.pt")
    task = BUILDERS["convlstm"](init_from=str(path))
    task.setup("validate")
    saved = load_checkpoint(path)["state_dict"]
    for key, modules in task.init_targets().items():
        _assert_holds(modules[0], saved[key])


def test_init_from_refuses_another_size_window_or_model(tmp_path):
    path = DiffusionTask(**TINY_DIFFUSION).export(tmp_path / "diffusion.pt")
    with pytest.raises(CheckpointMismatchError, match="dim"):
        DiffusionTask(**{**TINY_DIFFUSION, "dim": 32}, init_from=str(path)).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="n_out"):
        DiffusionTask(**{**TINY_DIFFUSION, "n_out": 2}, init_from=str(path)).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="time step"):
        DiffusionTask(**TINY_DIFFUSION, timestep_minutes=10.0, init_from=str(path)).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="'diffusion' model, not 'simvp'"):
        BUILDERS["simvp"](init_from=str(path)).setup("fit")


def test_adversarial_stage_resumes_its_generator(tmp_path):
    base = DiffusionTask(**TINY_DIFFUSION).export(tmp_path / "diffusion.pt")
    source = AdversarialTask(str(base), steps=2, z_dim=4, disc_channels=8, disc_depth=1)
    _scramble(source)
    path = source.export(tmp_path / "adversarial.pt")
    task = AdversarialTask(str(base), steps=2, z_dim=4, disc_channels=8, disc_depth=1, init_from=str(path))
    task.setup("fit")
    _assert_holds(task.generator, load_checkpoint(path)["state_dict"]["generator"])
    with pytest.raises(CheckpointMismatchError, match="steps"):
        AdversarialTask(str(base), steps=4, z_dim=4, disc_channels=8, disc_depth=1,
                        init_from=str(path)).setup("fit")
