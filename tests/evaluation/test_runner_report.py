"""EvaluationRunner + report on a tiny synthetic store: files, completeness, equal models, failures,
subsets, resume, and the runner's scores against a direct computation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.data.dataset import RadarWindowDataset
from nowcast.data.store import open_store
from nowcast.data.synthetic import write_synthetic_store
from nowcast.data.windows import build_window_index
from nowcast.evaluation import runner as runner_mod
from nowcast.evaluation.cases import evenly_spaced
from nowcast.evaluation.events import events_of, score_on_windows
from nowcast.evaluation.findings import KEY_METRICS, SET_LEVEL, findings, mean_of, window_pooled
from nowcast.evaluation.report import load_of, write_report
from nowcast.evaluation.runner import EvaluationRunner
from nowcast.evaluation.specs import EvaluatedModel
from nowcast.types import FUTURE, MASK, PAST

N_IN, N_OUT, CROP = 4, 3, 48
SCORES = ("mse_mm_h", "mse_pixel", "psnr", "ssim", "csi", "pod", "far", "bias", "csi_pool4", "csi_pool16",
          "fss", "crps", "rapsd", "ralsd")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> RadarWindowDataset:
    path = write_synthetic_store(tmp_path_factory.mktemp("store") / "syn.zarr", n_frames=14, height=56,
                                 width=56, seed=3)
    windows = build_window_index({"syn": open_store(path)}, N_IN, N_OUT, stride=2)
    return RadarWindowDataset({"syn": path}, windows, N_IN, N_OUT, crop_size=CROP)


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory):
    from nowcast.training.diffusion_task import DiffusionTask

    torch.manual_seed(0)
    task = DiffusionTask("diffusion:dim=16,depth=1,heads=2,patch=4", n_in=N_IN, n_out=N_OUT, val_steps=2)
    return task.export(tmp_path_factory.mktemp("ckpt") / "diffusion.pt")


@pytest.fixture(scope="module")
def report(dataset, diffusion_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    specs = ["persistence", "persistence:label=persistence again", "extrapolation",
             "extrapolation:max_windows=2,label=extrapolation subset",
             f"diffusion:checkpoint={diffusion_checkpoint},sampler=ddim,steps=2",
             "convlstm:checkpoint=/no/such/convlstm.pt"]
    runner = EvaluationRunner(dataset, list(range(len(dataset))), out, N_OUT, members=2, batch_size=2,
                              suite_kwargs={"perceptual": False}, n_cases=1, progress=False)
    runner.prepare()
    models = [EvaluatedModel.parse(s).to_dict() for s in specs]
    run = {"name": "test", "n_in": N_IN, "n_out": N_OUT, "timestep_minutes": 5.0, "members": 2,
           "n_windows": len(dataset), "crop": CROP, "models": models}
    (out / "run.json").write_text(json.dumps(run))
    results = runner.run(specs)
    write_report(out)
    return out, runner, specs, results


def test_model_spec_parsing():
    spec = EvaluatedModel.parse("diffusion:sampler=ddim,steps=50,checkpoint=a/b.pt,max_windows=3,members=4")
    assert spec.name == "diffusion" and spec.args == {"sampler": "ddim", "steps": 50}
    assert (spec.checkpoint, spec.max_windows, spec.members) == ("a/b.pt", 3, 4)
    assert spec.label == "diffusion:sampler=ddim,steps=50" and "/" not in spec.slug
    assert EvaluatedModel.parse("steps").label == "steps"
    assert EvaluatedModel.parse("steps").panels and not EvaluatedModel.parse("steps:panels=false").panels
    for bad in ("steps:members", "steps:members=0", "a b", "x:max_windows=two", "x:panels=maybe",
                {"name": "steps", "members": 0}, {"name": "steps", "bogus": 1}):
        with pytest.raises(ValueError):
            EvaluatedModel.parse(bad)
    mapping = {"name": "diffusion", "args": {"sampler": "ddim", "steps": 50}, "checkpoint": "a/b.pt",
               "max_windows": 3, "members": 4}
    assert EvaluatedModel.parse(mapping) == spec  # the YAML form and the short form are one spec
    assert EvaluatedModel.parse(spec.to_dict()) == spec  # as stored in run.json
    assert evenly_spaced(10, 3) == [0, 4, 9] and evenly_spaced(3, None) == [0, 1, 2]


def test_report_files_and_completeness(report):
    out, _, specs, _ = report
    for name in ("report.md", "report.html", "metrics.json", "metrics.csv", "spectra.csv", "speed.csv",
                 "figures/lead_times.png", "figures/csi_thresholds.png", "figures/spectra.png",
                 "figures/case0.png", "figures/case0_members.png", "figures/case0.gif",
                 "figures/rank_histograms.png", "figures/reliability.png", "figures/roc.png",
                 "figures/spread_skill.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == [EvaluatedModel.parse(s).label for s in specs]
    for label, res in metrics["models"].items():
        if res["status"] != "ok":
            continue
        assert set(SCORES) <= set(res["scores"]), label
        assert res["scores"]["skipped"] == ["lpips", "fid"]
        assert len(res["scores"]["csi"]["1.0"]["per_lead"]) == N_OUT
        assert res["speed"]["seconds_per_forecast"] > 0 and res["speed"]["device_name"]
        assert res["speed"]["load_average"] >= 0 and res["speed"]["cpu_count"] >= 1
    md = (out / "report.md").read_text()
    assert "LPIPS and FID skipped" in md and "![" in md
    assert "Speed (each model on the device named in its row)" in md
    speed = (out / "speed.csv").read_text().splitlines()
    assert speed[0].endswith(",load / cores")
    assert all(re.fullmatch(r"\d+\.\d / \d+", row.rsplit(",", 1)[1]) for row in speed[1:])
    assert load_of({"seconds_per_forecast": 1.0}) == "–"  # a run recorded before the load was
    assert "## Ensemble verification" in md and "Deterministic models (persistence" in md
    assert "95 % paired bootstrap interval" in md
    assert md.count("| persistence again |") >= 3  # summary, per-lead and threshold tables
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "model,metric,variant,lead_min,value"
    assert any(r.startswith("extrapolation,csi,1.0,mean,") for r in rows)
    # the CSVs carry 6 significant digits of what metrics.json holds in full
    metrics = json.loads((out / "metrics.json").read_text())["models"]
    csi = metrics["extrapolation"]["scores"]["csi"]["1.0"]["mean"]
    row = next(r for r in rows if r.startswith("extrapolation,csi,1.0,mean,"))
    assert row.rsplit(",", 1)[1] == f"{csi:.6g}"
    assert "<table>" in (out / "report.html").read_text()


def test_identical_models_score_identically(report):
    _, _, _, results = report
    a, b = results["persistence"]["scores"], results["persistence again"]["scores"]
    assert a == b
    assert a != results["extrapolation"]["scores"]


def test_scores_match_a_direct_computation(report, dataset):
    """Persistence MSE per lead, pooled over covered pixels of all windows, computed by hand."""
    _, _, _, results = report
    err, count = np.zeros(N_OUT), np.zeros(N_OUT)
    for i in range(len(dataset)):
        item = dataset[i]
        last, fut, mask = item[PAST][-1].numpy(), item[FUTURE].numpy(), item[MASK].numpy()
        for t in range(N_OUT):
            err[t] += ((last - fut[t])[mask].astype(np.float64) ** 2).sum()
            count[t] += mask.sum()
    got = results["persistence"]["scores"]["mse_mm_h"]["per_lead"]
    np.testing.assert_allclose(got, err / count, rtol=1e-5)


def test_failing_model_is_reported_not_fatal(report):
    out, _, _, results = report
    bad = results["convlstm"]  # the label leaves the checkpoint out
    assert bad["status"] == "failed" and "convlstm.pt" in bad["error"]
    assert all(r["status"] == "ok" for k, r in results.items() if r is not bad)
    md = (out / "report.md").read_text()
    assert "Models that failed" in md and "convlstm.pt" in md


def test_subset_and_findings(report, dataset):
    out, runner, _, results = report
    sub = results["extrapolation subset"]
    assert sub["n_windows"] == 2 and runner.cases[0] in sub["window_indices"]
    lines = findings(results, "diffusion", len(dataset))
    assert any("subset of 2" in ln for ln in lines)
    diffusion = next(k for k in results if k.startswith("diffusion"))
    assert any(ln.startswith(f"**{diffusion}** leads on") for ln in lines)
    # every key metric with a value has its leader stated, and the leader really is best
    mse_line = next(ln for ln in lines if ln.startswith("**MSE (mm/h)²**"))
    # ... among the models scored on every window: a subset is never ranked
    best = min((r["scores"]["mse_mm_h"]["mean"], k) for k, r in results.items()
               if r["status"] == "ok" and r["n_windows"] == len(dataset))
    assert not any("extrapolation subset (" in ln for ln in lines)
    assert f" {best[1]} (" in mse_line or mse_line.startswith(f"**MSE (mm/h)²** (lower is better): {best[1]}")
    assert len([ln for ln in lines if "leads." in ln]) == sum(
        1 for _, p, _ in KEY_METRICS if p[0] not in ("lpips", "fid"))


def spy_run_model(monkeypatch) -> list[str]:
    """The labels of the models the runner scores from now on (it still scores them)."""
    calls: list[str] = []
    real = runner_mod.EvaluationRunner.run_model
    monkeypatch.setattr(runner_mod.EvaluationRunner, "run_model",
                        lambda self, spec: calls.append(spec.label) or real(self, spec))
    return calls


def tiny_diffusion_run(dataset, tmp_path: Path) -> tuple[Path, EvaluatedModel, EvaluationRunner]:
    """Where a tiny diffusion checkpoint goes (:func:`export_tiny_diffusion`), its spec (one
    window) and a runner over ``dataset``."""
    spec = EvaluatedModel.parse(
        f"diffusion:checkpoint={tmp_path / 'diffusion.pt'},sampler=ddim,steps=1,max_windows=1,panels=false")
    runner = EvaluationRunner(dataset, list(range(len(dataset))), tmp_path / "out", N_OUT, members=1,
                              suite_kwargs={"perceptual": False}, n_cases=0, progress=False)
    return tmp_path / "diffusion.pt", spec, runner


def export_tiny_diffusion(path: Path, seed: int = 0) -> None:
    from nowcast.training.diffusion_task import DiffusionTask

    torch.manual_seed(seed)
    DiffusionTask("diffusion:dim=16,depth=1,heads=2,patch=4", n_in=N_IN, n_out=N_OUT).export(path)


def test_resume_skips_finished_models(report, monkeypatch):
    out, runner, specs, results = report
    calls = spy_run_model(monkeypatch)
    again = runner.run(specs[:3] + specs[-1:], resume=True)
    assert calls == [EvaluatedModel.parse(specs[-1]).label]  # only the failed one is retried
    assert again["persistence"] == results["persistence"]


def test_a_full_disk_stops_the_run_and_resume_finishes_it(dataset, tmp_path, monkeypatch):
    """A write that fails (a full disk) is not the model's failure: the run stops at once with the
    file named, leaves neither the file nor its temporary copy and no result calling the model
    failed; with space again, --resume scores what is missing."""
    import errno

    from nowcast import fsutil

    runner = EvaluationRunner(dataset, list(range(len(dataset))), tmp_path, N_OUT, members=1, batch_size=2,
                              suite_kwargs={"perceptual": False}, n_cases=1, progress=False)
    runner.prepare()
    folder = runner.result_path(EvaluatedModel.parse("extrapolation")).parent
    replace = fsutil.os.replace

    def disk_full_at_extrapolations_samples(src, dst):
        if Path(dst) == folder / "samples.npz":
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", disk_full_at_extrapolations_samples)
    specs = ["persistence", "extrapolation", "steps:members=2"]
    with pytest.raises(fsutil.WriteError, match=f"^cannot write {folder / 'samples.npz'}: No space left"):
        runner.run(specs)
    assert list(folder.iterdir()) == []
    assert not runner.result_path(EvaluatedModel.parse(specs[2])).exists()
    monkeypatch.undo()
    calls = spy_run_model(monkeypatch)
    results = runner.run(specs, resume=True)
    assert calls == ["extrapolation", "steps"] and {r["status"] for r in results.values()} == {"ok"}


def test_resume_scores_again_a_model_whose_weights_changed(dataset, tmp_path, monkeypatch):
    from nowcast.models.checkpoint import file_sha256

    ckpt, spec, runner = tiny_diffusion_run(dataset, tmp_path)
    export_tiny_diffusion(ckpt, seed=0)
    first = runner.run([spec])[spec.label]
    assert first["weights"] == [{"file": "diffusion.pt", "sha256": file_sha256(ckpt)}]
    calls = spy_run_model(monkeypatch)
    runner.run([spec], resume=True)
    assert calls == []  # same weights: the stored result stands
    export_tiny_diffusion(ckpt, seed=1)  # the checkpoint is retrained in place
    again = runner.run([spec], resume=True)[spec.label]
    assert calls == [spec.label]
    assert again["weights"][0]["sha256"] == file_sha256(ckpt) != first["weights"][0]["sha256"]


def test_resume_scores_again_a_model_whose_card_changed(dataset, tmp_path, monkeypatch):
    """A shipped file's card says how it forecasts (its forecast_args): a stored result made
    under other card settings is stale even though the weights are the same."""
    from nowcast.evaluation import specs as specs_mod

    ckpt, spec, runner = tiny_diffusion_run(dataset, tmp_path)
    export_tiny_diffusion(ckpt)
    card = {"match": "none"}
    monkeypatch.setattr(specs_mod, "card_forecast_args", lambda path: dict(card))
    assert runner.run([spec])[spec.label]["card_args"] == card
    calls = spy_run_model(monkeypatch)
    runner.run([spec], resume=True)
    assert calls == []  # same card: the stored result stands
    card["match"] = "observation"
    assert runner.run([spec], resume=True)[spec.label]["card_args"] == {"match": "observation"}
    assert calls == [spec.label]
    card["steps"] = 4  # the spec sets its own steps: what the card says of them does not count
    runner.run([spec], resume=True)
    assert calls == [spec.label]


def test_weight_files_name_every_checkpoint_a_model_reads():
    from nowcast.models import weight_files
    from nowcast.models.learned import CHECKPOINT_DIR

    assert weight_files("persistence") == []
    assert weight_files("convlstm", "elsewhere/convlstm.pt") == [Path("elsewhere/convlstm.pt")]
    assert weight_files("simvp") == [CHECKPOINT_DIR / "simvp.pt"]
    assert weight_files("diffusion", sampler="adversarial", steps=2) == [
        CHECKPOINT_DIR / "diffusion.pt", CHECKPOINT_DIR / "diffusion-adversarial-2.pt"]
    assert weight_files("diffusion", "mine.pt", sampler="adversarial", sampler_checkpoint="gen.pt") == [
        Path("mine.pt"), Path("gen.pt")]
    assert weight_files("diffusion", "mine.pt", sampler="adversarial") == [Path("mine.pt")]  # no shipped pair


def test_subsets_take_the_sample_cases_first_then_evenly_spaced_windows(dataset, tmp_path):
    runner = EvaluationRunner(dataset, list(range(10)), tmp_path, N_OUT, progress=False)
    runner.cases = [7, 3]
    assert runner.model_positions(EvaluatedModel.parse("persistence:max_windows=1")) == [7]
    assert runner.model_positions(EvaluatedModel.parse("persistence:max_windows=2")) == [3, 7]
    assert runner.model_positions(EvaluatedModel.parse("persistence:max_windows=4")) == [0, 3, 6, 7]
    assert runner.model_positions(EvaluatedModel.parse("persistence:max_windows=12")) == list(range(10))


def test_panels_false_spends_no_forecast_on_cases_outside_the_subset(dataset, tmp_path):
    runner = EvaluationRunner(dataset, list(range(len(dataset))), tmp_path, N_OUT, members=1,
                              suite_kwargs={"perceptual": False}, n_cases=2, progress=False)
    runner.run(["persistence:max_windows=1,label=drawn", "persistence:max_windows=1,panels=false,label=lean"])
    with np.load(tmp_path / "models/drawn/samples.npz") as z:
        assert {k.split("_")[0] for k in z.files} == {"case0", "case1"}
    with np.load(tmp_path / "models/lean/samples.npz") as z:  # its one window is case 0
        assert {k.split("_")[0] for k in z.files} == {"case0"}


def test_per_window_sums_match_a_direct_computation(report, dataset):
    """Persistence's per-window contingency counts, CRPS (= absolute error) and squared-error sums
    per lead time, computed by hand."""
    _, _, _, results = report
    per = results["persistence"]["per_window"]
    assert per["thresholds"] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert per["window_indices"] == list(range(len(dataset)))
    for i in range(len(dataset)):
        item = dataset[i]
        last, fut, mask = item[PAST][-1].numpy(), item[FUTURE].numpy(), item[MASK].numpy()
        for t in range(N_OUT):
            for k, thr in enumerate(per["thresholds"]):
                fc, ob = (last >= thr) & mask, (fut[t] >= thr) & mask
                assert per["counts"][i][t][k] == [int((fc & ob).sum()), int((~fc & ob).sum()),
                                                  int((fc & ~ob).sum())]
            err = (last - fut[t])[mask].astype(np.float64)
            np.testing.assert_allclose(per["crps"][i][t], [np.abs(err).sum(), mask.sum()], rtol=1e-5)
            np.testing.assert_allclose(per["mse_mm_h"][i][t], [(err ** 2).sum(), mask.sum()], rtol=1e-5)


def test_per_window_sums_pool_back_to_every_summary_score(report):
    """Pooled over all windows, the per-window sums give each summary score the suite computed (the
    frequency bias as its distance from 1), so the bootstrap intervals are about the stated numbers;
    FID and RALSD, set-level scores, have none."""
    _, _, _, results = report
    for label, res in results.items():
        if res["status"] != "ok":
            continue
        for _, path, better in KEY_METRICS:
            pooled = window_pooled(res, path)
            stated = mean_of(res, path)
            if tuple(path) in SET_LEVEL or stated is None:
                assert pooled is None or stated is None, (label, path)
                continue
            assert pooled is not None, (label, path)
            expected = abs(stated - 1.0) if better == "one" else stated
            assert pooled[1].value() == pytest.approx(expected, rel=1e-6, abs=1e-9), (label, path)


def pooled_csi(counts) -> float:
    """Mean over lead times of CSI pooled over windows, from (W, T, 3) counts."""
    h, m, f = np.sum(counts, axis=0).T
    return float(np.nanmean(np.where(h + m + f > 0, h / np.maximum(h + m + f, 1), np.nan)))


def test_a_focus_model_on_a_subset_is_compared_on_its_own_windows(report, dataset):
    """A subset of the focus model is set against every full model on the same windows."""
    _, _, _, results = report
    sub = results["extrapolation subset"]
    lines = findings(results, "extrapolation", len(dataset))
    line = next(ln for ln in lines if ln.startswith("On the same 2 window(s)"))
    counts = np.asarray(sub["per_window"]["counts"])[:, :, 1]  # 1 mm/h
    assert f"**extrapolation subset** {pooled_csi(counts):.3f}" in line
    assert "persistence" in line and "beyond noise" in line
    # the full extrapolation run holds the same counts on those two windows (same model, same motion)
    full = results["extrapolation"]["per_window"]
    same = [np.asarray(c)[:, 1] for w, c in zip(full["window_indices"], full["counts"], strict=True)
            if w in sub["window_indices"]]
    assert np.array_equal(same, counts)
    # the same model on the same windows: no difference
    assert f"extrapolation {pooled_csi(counts):.3f} (a tie: difference +0.000" in line


def test_a_folder_without_some_samples_keeps_its_case_figures(report, tmp_path):
    """samples.npz are not kept in git: redrawing a clone's report must not replace the case panels
    with ones that lack those models."""
    import shutil

    out = shutil.copytree(report[0], tmp_path / "clone")
    before = (out / "figures/case0.png").read_bytes()
    removed = sorted(out.glob("models/*/samples.npz"))[0]
    removed.unlink()
    write_report(out)
    assert (out / "figures/case0.png").read_bytes() == before
    assert "kept from an earlier drawing" in (out / "report.md").read_text()


def test_events_of_assigns_windows_by_the_events_time_ranges():
    """A window belongs to the event whose store and time range hold its issue time, also after
    midnight; a window outside every listed event is named by its store and day."""
    run = {"data": {"events": ["mch 2016-07-11T20:45:00 .. 2016-07-12T00:00:00",
                               "knmi 2021-02-02T20:05:00 .. 2021-02-02T23:00:00"]},
           "window_indices": [0, 1, 2, 3],
           "windows": ["mch 2016-07-11T21:05:00", "mch 2016-07-12T00:00:00", "knmi 2021-02-02T21:00:00",
                       "knmi 2021-02-04T21:00:00"]}
    assert events_of(run) == {"mch 2016-07-11": [0, 1], "knmi 2021-02-02": [2], "knmi 2021-02-04": [3]}


def test_report_pools_each_event_over_its_own_windows(report, tmp_path):
    """With two events in the run's description, the report tabulates each event's CRPS and CSI, and
    persistence's per-event CRPS is its mean absolute error over that event's pixels, per lead time,
    then averaged over lead times (computed here from the per-window sums by hand)."""
    out = tmp_path / "report"
    shutil.copytree(report[0], out)
    run = json.loads((out / "run.json").read_text())
    n = run["n_windows"]
    first = list(range(n // 2))
    run["window_indices"] = list(range(n))
    run["windows"] = [f"syn 2024-06-0{1 if i in first else 2}T12:00:00" for i in range(n)]
    run["data"] = {"events": ["syn 2024-06-01T00:00:00 .. 2024-06-01T23:55:00",
                              "syn 2024-06-02T00:00:00 .. 2024-06-02T23:55:00"]}
    (out / "run.json").write_text(json.dumps(run))
    write_report(out, figures=False)
    text = (out / "report.md").read_text()
    assert "## Scores by event" in text and f"syn 2024-06-01 ({len(first)} windows)" in text
    sums = np.asarray(report[3]["persistence"]["per_window"]["crps"])[first]  # (W, T, [abs error, pixels])
    by_hand = float(np.mean(sums[..., 0].sum(axis=0) / sums[..., 1].sum(axis=0)))
    assert score_on_windows(report[3]["persistence"], ("crps",), first) == pytest.approx(by_hand, rel=1e-9)
    assert score_on_windows(report[3]["convlstm"], ("crps",), first) is None   # failed: no sums
