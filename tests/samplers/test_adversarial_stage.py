"""The adversarial large-step stage: generator init, a few GAN steps, export and loading."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from nowcast.models.advection import advect
from nowcast.models.checkpoint import load_checkpoint
from nowcast.models.diffusion.discriminator import Discriminator
from nowcast.models.diffusion.forecaster import DiffusionForecaster
from nowcast.models.spec import ModelSpec
from nowcast.training import adversarial_task
from nowcast.training.adversarial_task import ADVERSARIAL_FORECASTER, AdversarialTask
from nowcast.training.diffusion_task import DiffusionTask
from nowcast.types import FUTURE, MASK, MOTION, PAST

N_IN, N_OUT, SIZE = 4, 3, 16


#: the patch Transformer on the full-resolution residual, and the CPU recipe's hybrid network on
#: a coarse, scaled residual with the x0 objective
BASES = {"transformer": {"patch": 4},
         "hybrid": {"architecture": "hybrid", "channels": [8, 16], "coarsen": 2, "residual_scale": 0.2,
                    "prediction_type": "x0"}}


@pytest.fixture(scope="module", params=list(BASES))
def diffusion_ckpt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported diffusion model whose weights are all non-trivial (not the zero init)."""
    torch.manual_seed(0)
    network = {"dim": 16, "depth": 1, "heads": 2, **BASES[request.param]}
    task = DiffusionTask(ModelSpec("diffusion", network), n_in=N_IN, n_out=N_OUT)
    with torch.no_grad():
        for p in task.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return task.export(tmp_path_factory.mktemp("diffusion") / "diffusion.pt")


def stage_of(base: Path | str, steps: int = 4, **settings) -> AdversarialTask:
    """The adversarial stage of the diffusion model ``base`` (its spec as ``nowcast forecast`` reads it)."""
    spec = ModelSpec("diffusion", {"sampler": "adversarial", "steps": steps}, str(base))
    return AdversarialTask(spec, **settings)


def make_batch(seed: int, b: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rain = lambda n: torch.rand(b, n, SIZE, SIZE, generator=g) ** 3 * 20  # noqa: E731  mm/h
    mask = torch.ones(b, SIZE, SIZE, dtype=torch.bool)
    mask[:, :2] = False
    return {PAST: rain(N_IN), FUTURE: rain(N_OUT), MASK: mask, MOTION: torch.full((b, 2, SIZE, SIZE), 0.5)}


def fit(task: AdversarialTask, tmp_path: Path, max_steps: int) -> L.Trainer:
    """A few optimiser steps of ``task`` on three random batches (one validation batch)."""
    batches = [make_batch(i) for i in range(3)]
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(task, DataLoader(batches, batch_size=None), DataLoader(batches[:1], batch_size=None))
    return trainer


def sampled_as_exported(task: AdversarialTask, base: Path, export: Path) -> torch.Tensor:
    """The forecast of the diffusion forecaster loading ``export`` on ``base``, checked to equal the
    task's own sampling with the same seed (the loaded generator is the trained one)."""
    steps = len(task.sampler.timesteps)
    forecaster = DiffusionForecaster.from_checkpoint(base, sampler="adversarial", steps=steps,
                                                     sampler_checkpoint=export)
    batch = make_batch(10)
    task.eval()
    ours = task.sample(batch[PAST], members=2, generator=torch.Generator().manual_seed(3),
                       motion=batch[MOTION])
    theirs = forecaster.forecast(batch[PAST], N_OUT, members=2, generator=torch.Generator().manual_seed(3),
                                 motion=batch[MOTION])
    assert theirs.shape == (2, 2, N_OUT, SIZE, SIZE)
    assert torch.allclose(ours, theirs, atol=1e-5)
    return theirs


@pytest.mark.parametrize("steps", [1, 4])
def test_generator_starts_as_the_denoiser(diffusion_ckpt: Path, steps: int) -> None:
    task = stage_of(diffusion_ckpt, steps, z_dim=8, disc_channels=8, disc_depth=2)
    x_t, cond = torch.randn(3, N_OUT, SIZE, SIZE), torch.randn(3, task.generator.cond_channels, SIZE, SIZE)
    t = torch.tensor([999, 500, 3])
    ref = task.denoiser(x_t, t, cond)
    assert ref.abs().mean() > 1e-3  # a non-trivial denoiser, so equality below means something
    for seed in (0, 1):
        z = 10 * torch.randn(3, 8, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(task.generator(x_t, t, cond, z), ref)
    assert task.sampler.timesteps.tolist() == {1: [999], 4: [999, 749, 499, 249]}[steps]


def test_bad_arguments_are_refused(diffusion_ckpt: Path) -> None:
    with pytest.raises(ValueError, match="steps"):
        stage_of(diffusion_ckpt, steps=3)
    with pytest.raises(ValueError, match="z_dim"):
        stage_of(diffusion_ckpt, z_dim=0)
    with pytest.raises(ValueError, match="objective must be one of"):
        stage_of(diffusion_ckpt, objective="mse")
    with pytest.raises(ValueError, match="crps_space must be one of"):
        stage_of(diffusion_ckpt, objective="crps", crps_space="dbz")
    with pytest.raises(ValueError, match="time_reversal .* needs precompute"):
        stage_of(diffusion_ckpt, time_reversal=True)
    with pytest.raises(FileNotFoundError):
        stage_of("no/such/diffusion.pt")


def test_discriminator_shapes_and_gradients() -> None:
    d = Discriminator(N_OUT, N_IN + N_OUT, channels=8, depth=2)
    x = torch.randn(2, N_OUT, 12, 20, requires_grad=True)
    out = d(x, torch.randn(2, N_OUT, 12, 20), torch.tensor([5, 900]), torch.randn(2, N_IN + N_OUT, 12, 20))
    assert out.shape == (2,) and torch.isfinite(out).all()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected"):
        d(x, x, torch.tensor([1, 2]), torch.randn(2, N_IN, 12, 20))


def test_gan_steps_export_and_load(diffusion_ckpt: Path, tmp_path: Path) -> None:
    task = stage_of(diffusion_ckpt, steps=2, z_dim=8, disc_channels=8, disc_depth=2,
                    r1_gamma=1.0, lambda_rec=0.5, lr_g=1e-3, lr_d=1e-3)
    disc0 = [p.detach().clone() for p in task.discriminator.parameters()]
    logged = fit(task, tmp_path, max_steps=6).callback_metrics
    for key in ("train/loss_d", "train/loss_g", "train/r1", "train/rec", "val/csi_1", "val/mse"):
        assert key in logged and math.isfinite(float(logged[key])), key
    assert task.generator.z_proj.weight.abs().sum() > 0  # the latent is now used
    assert any(not torch.equal(a, b) for a, b in zip(disc0, task.discriminator.parameters(), strict=True))

    path = task.export(tmp_path / "adversarial.pt")
    ckpt = load_checkpoint(path, forecaster=ADVERSARIAL_FORECASTER)
    assert ckpt["hparams"]["steps"] == 2 and ckpt["hparams"]["generator"]["z_dim"] == 8
    assert ckpt["window"] == load_checkpoint(diffusion_ckpt)["window"]
    theirs = sampled_as_exported(task, diffusion_ckpt, path)
    assert not torch.allclose(theirs[:, 0], theirs[:, 1])  # members differ (noise and z)


def test_generator_with_noise_maps_starts_as_the_denoiser(diffusion_ckpt: Path) -> None:
    if load_checkpoint(diffusion_ckpt)["hparams"].get("architecture") != "hybrid":
        with pytest.raises(ValueError, match="noise_maps needs the 'hybrid'"):
            stage_of(diffusion_ckpt, z_dim=8, noise_maps=2, objective="crps")
        return
    task = stage_of(diffusion_ckpt, z_dim=8, noise_maps=2, objective="crps")
    assert task.discriminator is None  # the scoring rule needs none
    x_t, cond = torch.randn(3, N_OUT, SIZE, SIZE), torch.randn(3, task.generator.cond_channels, SIZE, SIZE)
    t = torch.tensor([999, 500, 3])
    ref = task.denoiser(x_t, t, cond)
    noise = 10 * torch.randn(3, 2, SIZE, SIZE)
    assert torch.equal(task.generator(x_t, t, cond, torch.randn(3, 8), noise=noise), ref)
    with pytest.raises(ValueError, match="noise must be"):
        task.generator(x_t, t, cond, torch.randn(3, 8), noise=noise[:, :1])


def test_fair_crps_is_the_two_member_score(diffusion_ckpt: Path) -> None:
    """Against pointwise CRPS of nowcast.evaluation (the standard ensemble estimator): for two
    members the fair one subtracts |a - b| / 2 where the standard one subtracts |a - b| / 4."""
    from nowcast.evaluation.crps import crps_ensemble

    task = stage_of(diffusion_ckpt, z_dim=8, objective="crps")
    g = torch.Generator().manual_seed(0)
    a, b, x0 = (torch.randn(2, N_OUT, 4, 4, generator=g) for _ in range(3))
    draws = iter([a, b])
    task.generate_x0 = lambda *args: next(draws)  # the two generator samples, fixed
    covered = torch.ones(2, 4, 4, dtype=torch.bool)
    covered[:, 0] = False
    score = task.fair_crps(x0, None, None, None, covered)
    standard = crps_ensemble(torch.stack([a, b], dim=1), x0)
    expected = (standard - (a - b).abs() / 4)[covered[:, None].expand_as(a)].mean()
    assert torch.allclose(score, expected, atol=1e-6)


def test_crps_steps_export_and_load(diffusion_ckpt: Path, tmp_path: Path) -> None:
    settings = {"z_dim": 8, "objective": "crps", "lr_g": 1e-3}
    if load_checkpoint(diffusion_ckpt)["hparams"].get("architecture") == "hybrid":
        settings["noise_maps"] = 2
    task = stage_of(diffusion_ckpt, steps=2, **settings)
    assert math.isfinite(float(fit(task, tmp_path, max_steps=4).callback_metrics["train/loss"]))
    assert task.generator.z_proj.weight.abs().sum() > 0  # the latent is now used
    if "noise_maps" in settings:
        assert task.generator.stem.weight[:, -2 * task.generator.fold ** 2:].abs().sum() > 0

    path = task.export(tmp_path / "crps.pt")
    ckpt = load_checkpoint(path, forecaster=ADVERSARIAL_FORECASTER)
    assert ckpt["training"]["objective"] == "crps"
    assert ckpt["hparams"]["generator"].get("noise_maps", 0) == settings.get("noise_maps", 0)
    sampled_as_exported(task, diffusion_ckpt, path)


def test_rain_on_grid_inverts_the_training_inputs(diffusion_ckpt: Path) -> None:
    """The rain the "rain" scoring rule compares is the window's future: at full resolution exactly
    (below the ingest threshold 0), on a coarse grid the block means taken in model space."""
    diffusion = DiffusionForecaster.from_checkpoint(diffusion_ckpt).diffusion
    batch = make_batch(5)
    cond, residual, _ = diffusion.diffusion_inputs(batch[PAST], batch[FUTURE], batch[MASK], batch[MOTION])
    rain = diffusion.rain_on_grid(residual / diffusion.residual_scale, cond)
    future = batch[FUTURE]
    if diffusion.coarsen > 1:
        pooled = torch.nn.functional.avg_pool2d(diffusion.to_model(future), diffusion.coarsen)
        future = diffusion.to_rain(pooled)
    expected = torch.where(future >= 0.1, future, 0.0)
    assert rain.shape == expected.shape and torch.allclose(rain, expected, rtol=1e-3, atol=1e-4)


def test_crps_in_rain_units_trains(diffusion_ckpt: Path, tmp_path: Path) -> None:
    task = stage_of(diffusion_ckpt, steps=2, z_dim=8, objective="crps", crps_space="rain", lr_g=1e-3)
    batch = make_batch(7)
    batch[FUTURE][..., :4] = 0.0  # a dry strip
    cond, x0, covered = task.diffusion.training_inputs(batch)
    a = task.diffusion.rain_on_grid(x0, cond, threshold=False)
    draws = iter([x0, x0])
    with torch.no_grad():
        real = task.generate_x0
        task.generate_x0 = lambda *args: next(draws)  # both samples the truth: a perfect score
        assert float(task.fair_crps(x0, None, None, cond, covered)) == 0.0
        task.generate_x0 = real
    assert a.shape == x0.shape and (a >= 0).all()
    # scored as the forecast is issued: light rain that the forecast cuts (below 0.1 mm/h) costs nothing
    hazy = torch.where(a < 0.05, x0 + 0.005 / task.diffusion.residual_scale, x0)
    assert (task.diffusion.rain_on_grid(hazy, cond, threshold=False) > a).any()
    assert torch.equal(task.diffusion.rain_on_grid(hazy, cond), task.diffusion.rain_on_grid(x0, cond))
    task.generate_x0 = lambda *args: hazy
    assert float(task.fair_crps(x0, None, None, cond, covered)) == 0.0
    # ... yet the verified rain has the smooth inverse's gradient, below the cut too
    x, smooth = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    verified = task.verified_rain(x, cond)
    assert torch.equal(verified.detach(), task.diffusion.rain_on_grid(x0, cond))
    (grad,) = torch.autograd.grad(verified.sum(), x)
    (expected,) = torch.autograd.grad(task.diffusion.rain_on_grid(smooth, cond, threshold=False).sum(),
                                      smooth)
    assert torch.allclose(grad, expected) and (grad[a < 0.1] != 0).any()
    task.generate_x0 = real
    assert math.isfinite(float(fit(task, tmp_path, max_steps=3).callback_metrics["train/loss"]))
    assert load_checkpoint(task.export(tmp_path / "rain.pt"))["training"]["crps_space"] == "rain"


def test_perturbed_members_are_scored_where_they_land(diffusion_ckpt: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """With motion_perturbation, the members are displaced before they are scored: members that are
    all the truth, each moved one cell east, score |truth(x - 1) - truth(x)| (no spread to subtract)
    over the covered cells whose source lies inside the crop."""
    task = stage_of(diffusion_ckpt, steps=1, z_dim=8, objective="crps", crps_space="rain", crps_members=3,
                    motion_perturbation=0.5)
    batch = make_batch(4)
    cond, x0, covered = task.diffusion.training_inputs(batch)

    def two_cells_east(motion: torch.Tensor, members: int, n_out: int, *args) -> torch.Tensor:
        shift = torch.zeros(motion.shape[0], members, n_out, 2, *motion.shape[-2:])
        shift[:, :, :, 0] = 2.0  # x motion_perturbation 0.5: one cell
        return shift

    monkeypatch.setattr(adversarial_task, "bps_displacements", two_cells_east)
    task.generate_x0 = lambda *args: x0
    with torch.no_grad():
        score = task.fair_crps(x0, None, None, cond, covered, task.motion_on_grid(batch))
    truth = task.diffusion.rain_on_grid(x0, cond)
    err = (truth[..., :-1] - truth[..., 1:]).abs()
    scored = covered[:, None, :, 1:].expand_as(err)
    assert float(score) > 0 and torch.allclose(score, err[scored].mean(), atol=1e-6)


def test_perturbed_members_train_the_one_step_generator(diffusion_ckpt: Path, tmp_path: Path) -> None:
    crps = {"objective": "crps", "crps_space": "rain", "z_dim": 8}
    with pytest.raises(ValueError, match="steps: 1"):
        stage_of(diffusion_ckpt, steps=4, motion_perturbation=0.5, **crps)
    with pytest.raises(ValueError, match="crps_space 'rain'"):
        stage_of(diffusion_ckpt, steps=1, motion_perturbation=0.5, **{**crps, "crps_space": "diffused"})
    with pytest.raises(ValueError, match="crps_members"):
        stage_of(diffusion_ckpt, steps=1, crps_members=1, **crps)
    task = stage_of(diffusion_ckpt, steps=1, crps_members=3, motion_perturbation=0.5, lr_g=1e-3, **crps)
    before = [p.detach().clone() for p in task.generator.parameters()]
    assert math.isfinite(float(fit(task, tmp_path, max_steps=3).callback_metrics["train/loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, task.generator.parameters(), strict=True))
    path = task.export(tmp_path / "perturbed.pt")
    training = load_checkpoint(path)["training"]
    assert (training["crps_members"], training["motion_perturbation"]) == (3, 0.5)
    sampled_as_exported(task, diffusion_ckpt, path)


def test_issued_rain_is_scored_at_the_full_resolution(diffusion_ckpt: Path) -> None:
    """crps_space "issued": a zero residual is the extrapolation as issued, so members that are all
    zero score the extrapolation's mean absolute error at the full resolution over covered pixels
    (the extrapolation advected here, independently of the task); a residual changes the score
    pixel by pixel, not by block means."""
    task = stage_of(diffusion_ckpt, steps=1, z_dim=8, objective="crps", crps_space="issued", crps_members=3)
    diffusion = task.diffusion
    window = make_batch(6)
    batch = task.scored_inputs(window)  # a window becomes its precomputed inputs, 2 km fields kept
    assert task.scored_inputs(batch) is batch
    cond, x0, covered = diffusion.training_inputs(batch)
    issued = task.issued_truth(batch)
    task.generate_x0 = lambda *args: torch.zeros_like(x0)
    with torch.no_grad():
        score = float(task.fair_crps(x0, None, None, cond, covered, issued=issued))
    cut = lambda r: torch.where(r >= 0.1, r, 0.0)  # noqa: E731  the ingest threshold
    extrap = diffusion.to_rain(diffusion.to_model(advect(window[PAST][:, -1], window[MOTION], N_OUT)))
    err = (cut(extrap) - cut(window[FUTURE])).abs()
    expected = err[window[MASK][:, None].expand_as(err)].mean()
    assert math.isclose(score, float(expected), rel_tol=1e-4)
    with pytest.raises(ValueError, match="full-resolution"):
        task.fair_crps(x0, None, None, cond, covered)
    with pytest.raises(ValueError, match="full-resolution fields"):
        task.issued_truth({"cond": cond, "residual": x0})


def test_issued_members_are_displaced_at_the_full_resolution(diffusion_ckpt: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The motion errors are drawn on the diffusion grid and read at the full resolution: one
    diffusion cell of displacement moves the issued rain by ``coarsen`` pixels."""
    task = stage_of(diffusion_ckpt, steps=1, z_dim=8, objective="crps", crps_space="issued", crps_members=2,
                    motion_perturbation=0.5)
    k = task.diffusion.coarsen
    window = make_batch(8)
    batch = task.scored_inputs(window)
    cond, x0, covered = task.diffusion.training_inputs(batch)
    issued = task.issued_truth(batch)

    def one_cell_east(motion: torch.Tensor, members: int, n_out: int, *args) -> torch.Tensor:
        shift = torch.zeros(motion.shape[0], members, n_out, 2, *motion.shape[-2:])
        shift[:, :, :, 0] = 2.0  # x motion_perturbation 0.5: one cell
        return shift

    monkeypatch.setattr(adversarial_task, "bps_displacements", one_cell_east)
    truth = issued.future
    task.generate_x0 = lambda *args: torch.zeros_like(x0)
    forecast = task.verified_rain(torch.zeros_like(x0), cond, issued.base)
    with torch.no_grad():
        score = task.fair_crps(x0, None, None, cond, covered, task.motion_on_grid(batch), issued)
    err = (forecast[..., :-k] - truth[..., k:]).abs()
    scored = window[MASK][:, None, :, k:].expand_as(err)
    assert torch.allclose(score, err[scored].mean(), atol=1e-6)


def test_samples_are_scored_as_an_ensemble_of_the_verified_size(diffusion_ckpt: Path) -> None:
    """verified_members K: two samples a, b score (|a - y| + |b - y|) / 2 - (1 - 1/K) |a - b| / 2 (the
    CRPS expected of a K-member ensemble), over covered cells; None: the fair CRPS (no 1/K)."""
    batch = make_batch(9)
    for size, keep in ((8, 7 / 8), (None, 1.0)):
        task = stage_of(diffusion_ckpt, steps=1, z_dim=8, objective="crps", verified_members=size)
        cond, x0, covered = task.diffusion.training_inputs(batch)
        a, b = x0 + 0.3, x0 - 0.1 * torch.rand_like(x0)
        draws = iter([a, b])
        task.generate_x0 = lambda *args: next(draws)  # noqa: B023  consumed within this iteration
        with torch.no_grad():
            score = task.fair_crps(x0, None, None, cond, covered)
        per_cell = ((a - x0).abs() + (b - x0).abs()) / 2 - keep * (a - b).abs() / 2
        assert torch.allclose(score, per_cell[covered[:, None].expand_as(per_cell)].mean(), atol=1e-6)
    with pytest.raises(ValueError, match="verified_members"):
        stage_of(diffusion_ckpt, steps=1, z_dim=8, objective="crps", verified_members=0)


def test_only_the_named_modules_are_trained(diffusion_ckpt: Path, tmp_path: Path) -> None:
    hybrid = load_checkpoint(diffusion_ckpt)["hparams"].get("architecture") == "hybrid"
    trained = ["z_proj", "out" if hybrid else "final"]  # the latent injection and the output layer
    settings = {"z_dim": 8, "objective": "crps", "lr_g": 1e-3, "trainable": trained}
    task = stage_of(diffusion_ckpt, steps=2, **settings)
    before = {k: v.detach().clone() for k, v in task.generator.state_dict().items()}
    fit(task, tmp_path, max_steps=3)
    after = task.generator.state_dict()
    changed = {k.split(".")[0] for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed == set(trained)
    ckpt = load_checkpoint(task.export(tmp_path / "few.pt"), forecaster=ADVERSARIAL_FORECASTER)
    assert ckpt["training"]["trainable"] == trained
    with pytest.raises(ValueError, match="trainable must name modules of the generator.*known: .*z_proj"):
        stage_of(diffusion_ckpt, **{**settings, "trainable": ["z_prj"]})
    with pytest.raises(ValueError, match="trainable"):
        stage_of(diffusion_ckpt, **{**settings, "trainable": []})
