"""Bad input to `nowcast forecast` and `nowcast evaluate`: one line on stderr naming the problem and
the fix, exit code 2, nothing computed or written; a model that fails or does not fit makes
`evaluate` exit non-zero. In-process, on tiny synthetic stores; no learned model forecasts."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch

from nowcast.cli import main
from nowcast.data.synthetic import synthetic_event, write_synthetic_store
from nowcast.models.baselines.persistence import Persistence
from nowcast.models.learned import CHECKPOINT_DIR
from nowcast.schema import make_rain_dataset

SIZE = 32


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "s5.zarr", n_frames=8, height=SIZE,
                                 width=SIZE)


def one_error_line(capsys, command: str) -> str:
    """The stderr of a refused command: exactly one line, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"nowcast {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def no_model(*args, **kwargs):
    """In place of ``load_forecaster``: a refusal must come before any model is loaded."""
    raise AssertionError("a model was loaded before the options were checked")


def forecast(*args: object) -> int:
    return main(["forecast", "--quicklook", "none", "--n-out", "3", *map(str, args)])


# ------------------------------------------------------------------ forecast: checkpoints


def _truncated(tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes((CHECKPOINT_DIR / "simvp.pt").read_bytes()[:100_000])
    return path


class _Code:
    """Pickles as a call of os.system: what a hostile checkpoint would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("case, expected", [
    ("other model", "holds a 'cgan' model, not 'simvp'; load it as 'cgan' or give a 'simvp' checkpoint"),
    ("truncated", "is truncated or not a torch file"),
    ("missing", "checkpoint not found"),
    ("code", "holds pickled code (posix.system), refused"),
])
def test_bad_checkpoints_are_one_line(case, expected, store, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    if case == "code":
        torch.save({"format": "nowcast-checkpoint/1", "forecaster": "simvp", "x": _Code(marker)},
                   tmp_path / "code.pt")
    checkpoint = {"other model": CHECKPOINT_DIR / "cgan.pt", "truncated": _truncated(tmp_path),
                  "missing": tmp_path / "missing.pt", "code": tmp_path / "code.pt"}[case]
    out = tmp_path / "out" / "f.nc"
    assert forecast("--store", store, "--model", f"simvp:checkpoint={checkpoint}", "--output", out) == 2
    line = one_error_line(capsys, "forecast")
    assert expected in line and str(checkpoint) in line
    assert not marker.exists() and not out.parent.exists()


def test_unknown_model_and_argument_are_one_line(store, tmp_path, capsys):
    assert forecast("--store", store, "--model", "nonesuch", "--output", tmp_path / "f.nc") == 2
    assert "unknown forecaster 'nonesuch'; known:" in one_error_line(capsys, "forecast")
    assert forecast("--store", store, "--model", "persistence:bogus=1", "--output", tmp_path / "f.nc") == 2
    assert "persistence: unknown argument 'bogus'" in one_error_line(capsys, "forecast")
    assert forecast("--store", store, "--model", "persistence:bogus", "--output", tmp_path / "f.nc") == 2
    line = one_error_line(capsys, "forecast")
    assert "bad model spec 'persistence:bogus': 'bogus' is not key=value" in line
    assert forecast("--store", store, "--model", "extrapolation:interp_order=7",
                    "--output", tmp_path / "f.nc") == 2
    assert "interp_order must be a whole number in 0..5, got 7" in one_error_line(capsys, "forecast")


# ------------------------------------------------------------------ forecast: options


@pytest.mark.parametrize("option, value", [
    ("--members", 0), ("--members", -2), ("--n-out", 0), ("--n-out", -1), ("--batch-size", 0),
    ("--every", 0), ("--coarsen", 0),
])
def test_a_count_below_one_is_refused_before_the_model_loads(option, value, store, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setattr("nowcast.models.load_forecaster", no_model)
    assert forecast("--store", store, "--model", "steps", option, value, "--output", tmp_path / "f.nc") == 2
    assert f"{option} must be >= 1, got {value}" in one_error_line(capsys, "forecast")
    assert not (tmp_path / "f.nc").exists()


@pytest.mark.parametrize("option, value, gpus, expected", [
    ("--device", "foo", 0, "--device: unknown device 'foo'; use cpu, cuda or cuda:<index>"),
    ("--device", "cuda", 0, "device 'cuda' is not available: this machine has no CUDA GPU; use cpu"),
    ("--device", "cuda:3", 1, "this machine has 1 CUDA GPU(s), cuda:0..cuda:0"),
    ("--seed", 2**64, 0, f"--seed must be in 0..{2**64 - 1}"),
    ("--seed", 10**20, 0, "--seed must be in 0.."),
    ("--seed", -1, 0, "--seed must be in 0.."),
])
def test_a_device_or_seed_torch_refuses_is_refused_before_the_model_loads(option, value, gpus, expected,
                                                                         store, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr("nowcast.models.load_forecaster", no_model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert forecast("--store", store, "--model", "steps", option, value, "--output", tmp_path / "f.nc") == 2
    assert expected in one_error_line(capsys, "forecast")


def test_the_largest_seed_is_taken(store, tmp_path):
    assert forecast("--store", store, "--model", "persistence", "--seed", 2**64 - 1,
                    "--output", tmp_path / "f.nc") == 0


@pytest.mark.parametrize("field, model, expected", [
    ("foo", "steps", "field must be 'mean' or 'member<i>', got 'foo'"),
    ("member9", "steps", "'member9' is not a member of a forecast of 2 member(s) (member0..member1)"),
    ("member1", "persistence", "of 1 member(s)"),  # a deterministic model writes one member
])
def test_a_quicklook_field_the_forecast_lacks_is_refused_before_it_runs(field, model, expected, store,
                                                                       tmp_path, capsys, monkeypatch):
    """It failed once the first forecast file was written, which a rerun then refused to overwrite."""
    monkeypatch.setattr("nowcast.models.load_forecaster", no_model)
    assert forecast("--store", store, "--model", model, "--members", 2, "--quicklook", "png",
                    "--quicklook-field", field, "--output", tmp_path / "f.nc") == 2
    assert expected in one_error_line(capsys, "forecast")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ forecast: outputs


@pytest.mark.parametrize("output", ["/proc/x/f.nc", "{tmp}/file/f.nc", "{tmp}/file/folder"])
def test_unwritable_output_is_refused_before_anything_runs(output, store, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")

    monkeypatch.setattr("nowcast.models.load_forecaster", no_model)
    args = ("--start", "first") if output.endswith("folder") else ()
    assert forecast("--store", store, "--model", "persistence", *args,
                    "--output", output.format(tmp=tmp_path)) == 2
    line = one_error_line(capsys, "forecast")
    assert "choose another --output" in line
    assert ("is a file, not a folder" in line) if "{tmp}" in output else ("/proc/x" in line)


@pytest.mark.parametrize("store_at, output, extra, relation", [
    ("copy.zarr", "copy.zarr", (), "is the input rain store"),
    ("copy.zarr", "link.zarr", (), "is the input rain store"),  # a link to the store
    ("copy.zarr", "copy.zarr/f.nc", (), "lies inside the input rain store"),
    ("copy.zarr", "copy.zarr/forecasts", ("--start", "first"), "lies inside the input rain store"),
    ("out.zarr/copy.zarr", "out.zarr", (), "contains the input rain store"),
    ("copy.zarr", "sub/../copy.zarr", (), "is the input rain store"),
    ("raw", "raw", ("--start", "first"), "is the input raw folder"),
    ("raw", "raw/f.nc", (), "lies inside the input raw folder"),
    ("batch/persistence_20240601T1235Z.zarr", "batch", ("--format", "zarr"), "is the input rain store"),
])
def test_output_over_the_input_is_refused(store_at, output, extra, relation, store, tmp_path, capsys,
                                          monkeypatch):
    """--overwrite once replaced the input store by its own forecast; writing into the store or the
    raw folder corrupted it. Refused before any model is loaded; the input is left as it was."""
    from nowcast.data.store import open_store

    source = tmp_path / store_at
    if store_at == "raw":
        source.mkdir()
        option = "--input-dir"
    else:
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(store, source)
        option = "--store"
    (tmp_path / "link.zarr").symlink_to(source)
    (tmp_path / "sub").mkdir()
    if "persistence_" not in store_at:  # that one is found once the issue time is known
        monkeypatch.setattr("nowcast.models.load_forecaster", no_model)
    assert forecast(option, source, "--model", "persistence", *extra, "--output", tmp_path / output,
                    "--overwrite") == 2
    line = one_error_line(capsys, "forecast")
    assert relation in line and "choose another --output" in line
    if option == "--store":
        assert open_store(source).sizes["time"] == 8  # still the rain store


def test_a_folder_of_forecasts_may_hold_the_store(store, tmp_path):
    shutil.copytree(store, tmp_path / "copy.zarr")
    assert forecast("--store", tmp_path / "copy.zarr", "--model", "persistence", "--output", tmp_path) == 0
    assert len(list(tmp_path.glob("persistence_*.nc"))) == 1


@pytest.mark.parametrize("fmt, method, error, reason", [
    ("nc", "to_netcdf", RuntimeError("NetCDF: HDF error"), "NetCDF: HDF error"),
    ("zarr", "to_zarr", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
])
def test_a_full_disk_is_one_line_and_exit_1(fmt, method, error, reason, store, tmp_path, capsys,
                                            monkeypatch):
    """The second forecast of a batch cannot be written: the first stays, no temporary file is left."""
    import xarray as xr

    original, calls = getattr(xr.Dataset, method), []

    def full_after_one(self, path, *args, **kwargs):
        calls.append(path)
        original(self, path, *args, **kwargs)
        if len(calls) > 1:
            raise error

    monkeypatch.setattr(xr.Dataset, method, full_after_one)
    out = tmp_path / "batch"
    assert forecast("--store", store, "--model", "persistence", "--start", "2024-06-01T12:30",
                    "--output", out, "--format", fmt) == 1
    second = out / f"persistence_20240601T1235Z.{fmt}"
    line = one_error_line(capsys, "forecast")
    assert f"cannot write {second}: {reason} (disk full or not writable?)" in line
    assert sorted(p.name for p in out.iterdir()) == [f"persistence_20240601T1230Z.{fmt}"]


def test_a_quicklook_that_cannot_be_written_is_one_line_and_exit_1(store, tmp_path, capsys, monkeypatch):
    def no_space(ds, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nowcast.io.quicklook.write_png", no_space)
    assert main(["forecast", "--store", str(store), "--model", "persistence", "--n-out", "2",
                 "--quicklook", "png", "--output", str(tmp_path / "q.nc")]) == 1
    line = one_error_line(capsys, "forecast")
    assert f"cannot write {tmp_path / 'q.png'}: No space left on device (disk full" in line


def test_a_full_disk_is_one_line_and_exit_1_in_every_command(capsys, monkeypatch):
    """Whatever a command was writing when the disk filled up (a report, a checkpoint, a store)
    it says so in one line; an OSError that is not a failed write stays a traceback (a bug)."""
    import nowcast.commands.models as command

    def disk_full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/reports/x/metrics.csv")

    monkeypatch.setattr(command, "main", disk_full)
    assert main(["models"]) == 1
    assert one_error_line(capsys, "models") == ("nowcast models: error: cannot write /reports/x/metrics.csv: "
                                                "No space left on device (disk full or not writable?)")

    def broken_device(argv):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(command, "main", broken_device)
    with pytest.raises(OSError, match="Input/output error"):
        main(["models"])


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    import nowcast.commands.models as command

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "main", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "nowcast models: interrupted\n"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("command", ["forecast", "evaluate"])
def test_a_damaged_store_is_one_line_and_exit_2(store, tmp_path, capsys, command, damage):
    """A chunk damaged outside nowcast (a disk error, an interrupted copy) made every reader end in
    a codec's traceback ("error during blosc decompression") without a word of which file or why."""
    damaged = shutil.copytree(store, tmp_path / store.name)
    chunk = damaged / "rain_rate" / "6.0.0"
    chunk.write_bytes(os.urandom(64) if damage == "garbage" else chunk.read_bytes()[:40])
    where = ["--store", str(damaged), "--model" if command == "forecast" else "--models", "persistence"]
    options = (["--issue-time", "2024-06-01T12:30", "--n-out", "1", "--output", str(tmp_path / "f.nc")]
               if command == "forecast" else
               ["--n-out", "1", "--crop", "0", "--perceptual", "false", "--no_progress",
                "--output", str(tmp_path / "rep")])
    assert main([command, *where, *options]) == 2
    line = one_error_line(capsys, command)
    assert line.startswith(f"nowcast {command}: error: a stored chunk cannot be decoded (")
    assert "damaged outside nowcast" in line and "restore it from a copy" in line


def test_an_existing_quicklook_is_not_overwritten(store, tmp_path, capsys):
    png = tmp_path / "q.png"
    png.write_bytes(b"an older quicklook")
    args = ("--store", store, "--model", "persistence", "--output", tmp_path / "q.nc")
    assert main(["forecast", "--n-out", "2", "--quicklook", "png", *map(str, args)]) == 2
    line = one_error_line(capsys, "forecast")
    assert "q.png" in line and "use --overwrite to replace them" in line
    assert png.read_bytes() == b"an older quicklook" and not (tmp_path / "q.nc").exists()
    assert main(["forecast", "--n-out", "2", "--quicklook", "png", "--overwrite", *map(str, args)]) == 0
    assert png.read_bytes() != b"an older quicklook"


# ------------------------------------------------------------------ forecast: inputs


@pytest.fixture(scope="module")
def blank_last_store(tmp_path_factory):
    """Eight frames whose last (12:35) holds no radar data at all."""
    ev = synthetic_event(n_frames=8, height=SIZE, width=SIZE)
    rain = ev.rain_rate.values.copy()
    rain[-1] = np.nan
    ds = make_rain_dataset(rain, ev.time.values, ev.x.values, ev.y.values, ev.crs.attrs["crs_wkt"],
                           ev.source_file.values.tolist(), {"timestep_minutes": 5.0})
    path = tmp_path_factory.mktemp("blank") / "blank.nc"
    ds.to_netcdf(path)
    return path


def test_an_input_frame_without_data_is_refused_or_skipped(blank_last_store, tmp_path, capsys, caplog):
    assert forecast("--store", blank_last_store, "--model", "persistence", "--output", tmp_path / "f.nc") == 2
    line = one_error_line(capsys, "forecast")
    assert "2024-06-01T12:35:00Z hold no radar data" in line and "--issue-time" in line
    assert not (tmp_path / "f.nc").exists()
    out = tmp_path / "batch"
    assert forecast("--store", blank_last_store, "--model", "persistence", "--start", "first",
                    "--output", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and "persistence_20240601T1235Z.nc" not in names
    assert "skipping issue time 2024-06-01T12:35:00Z" in caplog.text and "no radar data" in caplog.text


@pytest.mark.parametrize("minutes", [10.0, 2.0])
def test_a_learned_model_refuses_another_time_step(minutes, tmp_path, capsys):
    store = write_synthetic_store(tmp_path / "s.zarr", n_frames=6, height=SIZE, width=SIZE,
                                  timestep_minutes=minutes)
    assert forecast("--store", store, "--model", "simvp", "--output", tmp_path / "f.nc") == 2
    line = one_error_line(capsys, "forecast")
    assert f"simvp cannot run on {store}" in line
    assert f"built for a 5-min time step, data has a {minutes:g}-min one" in line


# ------------------------------------------------------------------ evaluate


def evaluate(store, out, *models: str, extra: tuple[str, ...] = ()) -> int:
    return main(["evaluate", "--store", str(store), "--crop", "16", "--n-out", "3", "--max-windows", "2",
                 "--members", "1", "--perceptual", "false", "--n-cases", "1", "--no_progress",
                 "--output", str(out), *extra, "--models", *models])


@pytest.mark.parametrize("models, expected", [
    (["persistence:bogus=1"], "--models: persistence: unknown argument 'bogus'; known: none"),
    (["persistence", "nonesuch"], "--models: unknown forecaster 'nonesuch'; known: cgan,"),
    (["persistence:checkpoint=x.pt"], "persistence has no weights and takes no checkpoint"),
    (["extrapolation:n_in=1"], "extrapolation(n_in=1): extrapolation needs n_in >= 2"),
    (["steps:ar_order=0"], "steps(ar_order=0): ar_order must be a whole number >= 1, got 0"),
    (["simvp:checkpoint=" + str(CHECKPOINT_DIR / "cgan.pt")], "holds a 'cgan' model, not 'simvp'"),
])
def test_evaluate_refuses_bad_models_before_any_runs(models, expected, store, tmp_path, capsys):
    out = tmp_path / "report"
    assert evaluate(store, out, *models) == 2
    assert expected in one_error_line(capsys, "evaluate")
    assert not out.exists()


def test_evaluate_with_a_failing_model_exits_non_zero(store, tmp_path, capsys, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Persistence, "_forecast", broken)
    out = tmp_path / "report"
    assert evaluate(store, out, "persistence", "extrapolation") == 1
    assert "model persistence failed: RuntimeError: out of memory" in one_error_line(capsys, "evaluate")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["extrapolation"]["status"] == "ok"


@pytest.mark.parametrize("minutes", [10.0, 2.0])
def test_evaluate_refuses_a_learned_model_on_another_time_step_and_goes_on(minutes, tmp_path, capsys):
    store = write_synthetic_store(tmp_path / "s.zarr", n_frames=10, height=SIZE, width=SIZE,
                                  timestep_minutes=minutes)
    out = tmp_path / "report"
    assert evaluate(store, out, "persistence", "simvp") == 2
    line = one_error_line(capsys, "evaluate")
    assert f"model simvp refused: simvp cannot run on {store}" in line
    assert f"built for a 5-min time step, data has a {minutes:g}-min one" in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["persistence"]["status"] == "ok"
    assert metrics["models"]["simvp"]["status"] == "refused"


def test_evaluate_split_without_windows(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert evaluate(store, out, "persistence", extra=("--end", "2024-06-01T12:10")) == 2
    line = one_error_line(capsys, "evaluate")
    assert "has no windows of 4 + 3 frames" in line and "lower --n-in/--n-out" in line
    assert not out.exists()


@pytest.mark.parametrize("config, expected", [
    ("splits:\n  test: [{store: syn}]\nevl_crop_size: 16\n",
     "unknown key 'evl_crop_size' (did you mean 'eval_crop_size'?)"),
    ("splits:\n  test: [{store: syn}]\n  val: [{store: syn, start: '2024-06-01T12:10'}]\n",
     "splits 'test' and 'val' overlap"),
    ("splits:\n  test: [{store: other}]\n", "splits name stores not in `stores`: ['other']"),
])
def test_evaluate_bad_data_config(config, expected, store, tmp_path, capsys):
    path = tmp_path / "data.yaml"
    path.write_text(f"stores: {{syn: {store}}}\n{config}")
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(path), "--output", str(out), "--models", "persistence"]) == 2
    line = one_error_line(capsys, "evaluate")
    assert expected in line and str(path) in line
    assert not out.exists()


def test_evaluate_refuses_stores_of_different_steps(tmp_path, capsys):
    paths = {m: write_synthetic_store(tmp_path / f"s{m}.zarr", n_frames=10, height=SIZE, width=SIZE,
                                      timestep_minutes=float(m)) for m in (5, 10)}
    path = tmp_path / "data.yaml"
    path.write_text(f"stores: {{a: {paths[5]}, b: {paths[10]}}}\n"
                    "splits:\n  test: [{store: a}, {store: b}]\neval_crop_size: 16\nn_out: 3\n")
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(path), "--output", str(out), "--models", "persistence"]) == 2
    assert "differ in time step or pixel size (a 5 min, 2000 m; b 10 min, 2000 m)" in one_error_line(
        capsys, "evaluate")
    assert not out.exists()
