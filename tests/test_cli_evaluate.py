"""`nowcast evaluate` end to end on a tiny synthetic store: report folder, resume, bad input."""

from __future__ import annotations

import json

import pytest

from nowcast.cli import main as cli_main
from nowcast.data.synthetic import write_synthetic_store
from nowcast.types import repo_root


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "syn.zarr", n_frames=12, height=48,
                                 width=48, seed=5)


def common(store, out, max_windows: int = 3) -> list[str]:
    return ["--config", str(repo_root() / "configs/evaluate/synthetic.yaml"), "--store", str(store),
            "--crop", "40", "--n-out", "3", "--max-windows", str(max_windows), "--members", "2",
            "--perceptual", "false", "--n-cases", "1", "--no_progress", "--output", str(out)]


def test_evaluate_writes_report_and_resumes(store, tmp_path, capsys):
    out = tmp_path / "rep"
    # a model argument that cannot work is refused before any model runs, leaving no folder
    broken = ["evaluate", *common(store, out),
              "--models", "persistence", "extrapolation", "persistence:checkpoint=/missing.pt,label=broken"]
    assert cli_main(broken) == 2
    assert "takes no checkpoint" in capsys.readouterr().err and not out.exists()
    argv = ["evaluate", *common(store, out), "--models", "persistence", "extrapolation"]
    assert cli_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["persistence", "extrapolation"]
    run = metrics["run"]
    assert run["n_windows"] == 3 and run["n_out"] == 3 and run["crop"] == 40
    assert run["git"]["commit"] and run["data"]["stores"]["syn"]["grid_shape"] == [48, 48]
    assert run["config"]["models"][0] == "persistence" and "nowcast evaluate" in run["command"]
    for name in ("report.html", "report.md", "metrics.csv", "speed.csv", "figures/case0.gif"):
        assert (out / name).exists(), name
    stamp = (out / "models/persistence/result.json").stat().st_mtime_ns
    assert cli_main(["evaluate", *common(store, out), "--models", "persistence", "--resume"]) == 0
    assert (out / "models/persistence/result.json").stat().st_mtime_ns == stamp  # skipped, not rerun
    # another window set in the same folder is refused under --resume
    again = ["evaluate", *common(store, out, max_windows=2), "--models", "persistence", "--resume"]
    assert cli_main(again) == 2
    assert "other windows" in capsys.readouterr().err


def test_evaluate_bad_input(store, tmp_path, capsys):
    assert cli_main(["evaluate", "--data", "configs/data/synthetic.yaml", "--start", "2024-06-01",
                     "--output", str(tmp_path / "x")]) == 2
    assert "--start/--end" in capsys.readouterr().err
    missing = ["evaluate", "--store", str(tmp_path / "nothing.zarr"), "--output", str(tmp_path / "y")]
    assert cli_main(missing) == 2
    assert "not found" in capsys.readouterr().err



@pytest.mark.parametrize("option, words", [
    (["--members", "0"], "--members must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--n-cases", "-1"], "--n-cases must be >= 0, got -1"),
    (["--seed", "-1"], "--seed must be in 0.."),
    (["--device", "foo"], "unknown device 'foo'"),
])
def test_options_that_cannot_run_are_refused_before_anything_runs(option, words, store, tmp_path, capsys):
    """One line and exit 2, no report folder (these used to fail as a 'failed model', a traceback,
    or to run with a silently changed value)."""
    out = tmp_path / "rep"
    assert cli_main(["evaluate", *common(store, out), "--models", "persistence", *option]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not out.exists()

def test_evaluate_with_cached_motion_needs_the_cache_and_then_shares_it(tmp_path, capsys):
    store = write_synthetic_store(tmp_path / "syn.zarr", n_frames=12, height=48, width=48, seed=5)
    out = tmp_path / "rep"
    argv = ["evaluate", *common(store, out), "--models", "extrapolation", "--motion", "cache"]
    assert cli_main(argv) == 2
    assert "no cached motion" in capsys.readouterr().err and not (out / "run.json").exists()

    assert cli_main(["motion", "--store", str(store), "--n-out", "3", "--no_progress"]) == 0
    assert (tmp_path / "syn.motion.zarr").exists()
    assert cli_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["data"]["motion"] == "cache"
    assert metrics["models"]["extrapolation"]["status"] == "ok"


def test_resume_with_other_models_finishes_the_same_report(store, tmp_path, capsys):
    """A report begun with some models (say on a CPU) is finished with others (say on a GPU)."""
    out = tmp_path / "rep"
    assert cli_main(["evaluate", *common(store, out), "--models", "persistence"]) == 0
    assert cli_main(["evaluate", *common(store, out), "--models", "extrapolation", "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["persistence", "extrapolation"]
    assert all(m["status"] == "ok" for m in metrics["models"].values())
    assert len(metrics["run"]["parts"]) == 2 and "Run in 2 parts" in (out / "report.md").read_text()
    # the same folder with another motion source would mix incomparable results
    other = tmp_path / "other.zarr"
    write_synthetic_store(other, n_frames=12, height=48, width=48, seed=5)
    assert cli_main(["motion", "--store", str(other), "--n-out", "3", "--no_progress"]) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", *common(other, out), "--models", "persistence", "--motion", "cache",
                     "--resume"]) == 2
    assert "other motion" in capsys.readouterr().err


def test_resume_refuses_a_run_that_scores_something_else(store, tmp_path, capsys):
    """--resume into a folder whose results were scored on other data or settings is refused
    before anything runs (one line: what differs, there and now, and the fix), the folder byte for
    byte as it was; the same run, even from a copy of the store elsewhere, is finished as before."""
    import shutil

    out = tmp_path / "rep"
    assert cli_main(["evaluate", *common(store, out), "--models", "persistence"]) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = write_synthetic_store(tmp_path / "other.zarr", n_frames=12, height=48, width=48, seed=6)
    namesake = write_synthetic_store(tmp_path / "elsewhere" / store.name, n_frames=12, height=48, width=48,
                                     seed=6)  # same name, other rain
    refused = {  # options after the first run's -> what the message names
        (other,): ["other windows (#1 [", "'other 2024-", "other stores (['syn'] there, ['other'] now)"],
        (namesake,): ["other stores (syn source 'nowcast.data.synthetic (seed 5)' there, "
                      "'nowcast.data.synthetic (seed 6)' now)"],
        (store, "--crop", "32"): ["other crop (40 there, 32 now)"],
        (store, "--members", "3"): ["other members (2 there, 3 now)"],
        (store, "--seed", "1", "--point", "member0"): ["other point forecast ('mean' there, 'member0' now), "
                                                       "other seed (0 there, 1 now)"],
    }
    capsys.readouterr()
    for (where, *options), said in refused.items():
        argv = ["evaluate", *common(where, out), *options, "--models", "persistence", "--resume"]
        assert cli_main(argv) == 2, options
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"nowcast evaluate: error: {out} holds results for other ")
        assert all(s in err for s in said), err
        assert "use another --output folder, or --overwrite instead of --resume" in err, err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files, options
    copy = shutil.copytree(store, tmp_path / "copied" / store.name)  # e.g. on another machine
    stamp = (out / "models/persistence/result.json").stat().st_mtime_ns
    argv = ["evaluate", *common(copy, out), "--models", "persistence", "extrapolation", "--resume"]
    assert cli_main(argv) == 0
    assert (out / "models/persistence/result.json").stat().st_mtime_ns == stamp  # kept, not rerun
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["status"] for m in metrics["models"].values()] == ["ok", "ok"]
    assert len(metrics["run"]["parts"]) == 2


def test_an_earlier_runs_folder_is_continued_or_replaced_never_mixed(store, tmp_path, capsys):
    """Scoring another store into a report folder without --resume used to keep the earlier run's
    results beside the new run.json, and a later --resume reported them as this store's. Such a
    folder is now refused (one line, folder unchanged) unless --overwrite replaces its results."""
    out = tmp_path / "rep"
    assert cli_main(["evaluate", *common(store, out), "--models", "persistence", "extrapolation"]) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = write_synthetic_store(tmp_path / "other.zarr", n_frames=12, height=48, width=48, seed=6)
    capsys.readouterr()
    assert cli_main(["evaluate", *common(other, out), "--models", "persistence"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"nowcast evaluate: error: {out} holds the results of an earlier run; add --resume to "
                   "continue it (same windows, data and settings), --overwrite to replace them, or give "
                   "another --output")
    assert cli_main(["evaluate", *common(other, out), "--models", "persistence", "--resume",
                     "--overwrite"]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert cli_main(["evaluate", *common(other, out), "--models", "persistence", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "models").iterdir()) == ["persistence"]
    assert cli_main(["evaluate", *common(other, out), "--models", "persistence", "extrapolation",
                     "--resume"]) == 0
    scored = out / "models/extrapolation/result.json"  # on the other store, not kept from the first
    assert json.loads(scored.read_text())["status"] == "ok" and scored.read_bytes() != files[scored]
    assert list(json.loads((out / "metrics.json").read_text())["run"]["data"]["stores"]) == ["other"]


def test_a_second_network_store_is_scored_with_its_own_grid(shared_radar, tmp_path, capsys):
    """FMI 2016-09-28 at its native 1 km, ingested by the user: the example config scores it with no
    edits; STEPS takes 1 km pixels from the store, the shipped diffusion model (2 km) is refused
    with the reason, the others are scored (exit 2), ensembles get their ensemble scores."""
    from radar_events import EVENTS

    from data_pipelines.ingest import ingest_files

    files = sorted(p for p in (shared_radar / EVENTS["fmi"]).iterdir() if p.is_file())[20:28]
    if len(files) < 8:
        pytest.skip("FMI 2016-09-28 files not found")
    store = tmp_path / "fmi.zarr"
    ingest_files(files, store, source="fmi", coarsen=1, progress=False)
    out = tmp_path / "report"
    config = repo_root() / "configs/evaluate/my-store.yaml"
    argv = ["evaluate", "--config", str(config), "--store", str(store),
            "--n-out", "3", "--crop", "96", "--stride", "2", "--members", "3", "--perceptual", "false",
            "--n-cases", "1", "--no_progress", "--output", str(out),
            "--models", "persistence", "extrapolation", "steps:members=3", "diffusion"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "diffusion refused" in err and "built for 2000 m pixels, data has 999.674 m" in err
    metrics = json.loads((out / "metrics.json").read_text())["models"]
    assert [r["status"] for r in metrics.values()] == ["ok", "ok", "ok", "refused"]
    steps = next(r for r in metrics.values() if r["spec"]["name"] == "steps")
    assert steps["describe"]["kmperpixel"] == pytest.approx(1.0, rel=1e-3)
    assert steps["scores"]["ensemble"]["members"] == 3
    assert metrics["extrapolation"]["scores"]["ensemble"] is None  # deterministic
    md = (out / "report.md").read_text()
    assert "## Ensemble verification" in md and "refused" in md


def test_one_model_spec_file_serves_forecast_and_evaluate(store, tmp_path, capsys):
    spec = tmp_path / "my-model.yaml"
    spec.write_text("name: extrapolation\nargs: {interp_order: 0}\n")
    forecast = ["forecast", "--store", str(store), "--model", str(spec), "--n-out", "3", "--members", "1",
                "--quicklook", "none", "--output", str(tmp_path / "f.nc")]
    assert cli_main(forecast) == 0
    assert (tmp_path / "f.nc").exists()
    assert cli_main(["evaluate", *common(store, tmp_path / "rep", max_windows=1), "--models", str(spec)]) == 0
    result = json.loads((tmp_path / "rep/models/extrapolation_interp_order=0/result.json").read_text())
    assert result["status"] == "ok" and result["spec"]["args"] == {"interp_order": 0}
    spec.write_text("name: extrapolation\nargs: {interp_order: 0, bogus: 1}\n")  # refused by both alike
    assert cli_main(forecast) == 2 and cli_main(["evaluate", *common(store, tmp_path / "r2"), "--models",
                                                   str(spec)]) == 2
    assert capsys.readouterr().err.count("unknown argument 'bogus'") == 2


def test_a_single_lead_time_is_scored(store, tmp_path, capsys):
    """--n-out 1: torchmetrics returns one-lead scores as 0-d tensors; every model is still scored."""
    out = tmp_path / "rep"
    argv = ["evaluate", *common(store, out), "--models", "persistence", "steps:members=2", "--n-out", "1"]
    assert cli_main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for label in ("persistence", "steps"):
        result = metrics["models"][label]
        assert result["status"] == "ok" and len(result["scores"]["csi"]["1.0"]["per_lead"]) == 1
