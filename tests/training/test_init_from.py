"""Fine-tuning from a nowcast checkpoint (the trained model spec's ``checkpoint``, a task's
``init_from``): the weights arrive, another setup is refused."""

from __future__ import annotations

import pytest
import torch

from nowcast.models.checkpoint import CheckpointMismatchError, load_checkpoint
from nowcast.models.spec import ModelSpec
from nowcast.training.adversarial_task import AdversarialTask
from nowcast.training.baseline_tasks import CGANTask, RegressionTask
from nowcast.training.diffusion_task import DiffusionTask

TINY_DIFFUSION = {"dim": 16, "depth": 1, "heads": 2, "patch": 4}


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


def diffusion(checkpoint: str | None = None, n_out: int = 3, **settings) -> DiffusionTask:
    """The tiny diffusion task, with ``settings`` overriding its network's, started from ``checkpoint``."""
    return DiffusionTask(ModelSpec("diffusion", {**TINY_DIFFUSION, **settings}, checkpoint), n_out=n_out)


def adversarial(base: str, steps: int, generator: str | None = None) -> AdversarialTask:
    """The tiny adversarial stage of ``base`` (continuing ``generator``)."""
    sampling = {"sampler": "adversarial", "steps": steps, "sampler_checkpoint": generator}
    spec = ModelSpec("diffusion", sampling, base)
    return AdversarialTask(spec, z_dim=4, disc_channels=8, disc_depth=1)


def tiny(task: type, name: str):
    """A builder of ``task`` training the tiny preset of ``name``, started from an optional checkpoint."""
    return lambda checkpoint=None: task(ModelSpec(name, {"size": "tiny"}, checkpoint), n_out=3)


BUILDERS = {"diffusion": diffusion, "simvp": tiny(RegressionTask, "simvp"),
            "convlstm": tiny(RegressionTask, "convlstm"), "cgan": tiny(CGANTask, "cgan")}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_init_from_copies_every_module_and_records_it(name, tmp_path):
    source = BUILDERS[name]()
    _scramble(source)
    path = source.export(tmp_path / "source.pt")
    saved = load_checkpoint(path)["state_dict"]
    task = BUILDERS[name](str(path))
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
    again = BUILDERS[name](str(tuned))
    again.setup("fit")
    chain = load_checkpoint(again.export(tmp_path / "again.pt"))["training"]["init_from"]
    assert chain["training"]["init_from"]["sha256"] == record["sha256"]


def test_validate_scores_the_init_from_weights(tmp_path):
    """``nowcast train validate --model.init_args.model.checkpoint F`` scores F, not fresh weights."""
    source = BUILDERS["convlstm"]()
    _scramble(source)
    path = source.export(tmp_path / "source.pt")
    task = BUILDERS["convlstm"](str(path))
    task.setup("validate")
    saved = load_checkpoint(path)["state_dict"]
    for key, modules in task.init_targets().items():
        _assert_holds(modules[0], saved[key])


def test_init_from_refuses_another_size_window_or_model(tmp_path):
    path = str(diffusion().export(tmp_path / "diffusion.pt"))
    with pytest.raises(CheckpointMismatchError, match="dim"):
        diffusion(path, dim=32).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="n_out 3 in the checkpoint, 2 in this config"):
        diffusion(path, n_out=2).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="time step"):
        spec = ModelSpec("diffusion", TINY_DIFFUSION, path)
        DiffusionTask(spec, n_out=3, timestep_minutes=10.0).setup("fit")
    with pytest.raises(CheckpointMismatchError, match="'diffusion' model, not 'simvp'"):
        BUILDERS["simvp"](path).setup("fit")


def test_adversarial_stage_resumes_its_generator(tmp_path):
    base = str(diffusion().export(tmp_path / "diffusion.pt"))
    source = adversarial(base, steps=2)
    _scramble(source)
    path = str(source.export(tmp_path / "adversarial.pt"))
    task = adversarial(base, steps=2, generator=path)
    task.setup("fit")
    _assert_holds(task.generator, load_checkpoint(path)["state_dict"]["generator"])
    with pytest.raises(CheckpointMismatchError, match="steps"):
        adversarial(base, steps=4, generator=path).setup("fit")


def test_tasks_refuse_a_model_they_do_not_train(tmp_path):
    """The trained model spec names what is built; a task refuses another model or an unknown setting."""
    with pytest.raises(ValueError, match="RegressionTask trains convlstm or simvp, not 'cgan'"):
        RegressionTask(ModelSpec("cgan"))
    with pytest.raises(ValueError, match=r"unknown setting 'dimm' \(did you mean 'dim'\?\); known: "):
        DiffusionTask("diffusion:dimm=3")
    base = str(diffusion().export(tmp_path / "diffusion.pt"))
    with pytest.raises(ValueError, match="trains the 'adversarial' sampler, not 'ddim'"):
        AdversarialTask(ModelSpec("diffusion", {"sampler": "ddim"}, base))
    with pytest.raises(ValueError, match="needs the diffusion model's checkpoint"):
        AdversarialTask(ModelSpec("diffusion", {"steps": 2}))
