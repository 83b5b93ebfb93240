"""`nowcast forecast` end to end, in-process, on small synthetic events."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nowcast.cli import main
from nowcast.data.synthetic import synthetic_event, write_synthetic_store
from nowcast.io import open_forecast
from nowcast.schema import make_rain_dataset

SIZE = 40


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "event.zarr", n_frames=8,
                                 height=SIZE, width=SIZE)


@pytest.fixture(scope="module")
def gappy_store(tmp_path_factory):
    """Ten frames with frame 5 (12:25) missing, as a netCDF store."""
    ev = synthetic_event(n_frames=10, height=SIZE, width=SIZE).drop_isel(time=[5])
    ds = make_rain_dataset(ev.rain_rate.values, ev.time.values, ev.x.values, ev.y.values,
                           ev.crs.attrs["crs_wkt"], ev.source_file.values.tolist(), {"timestep_minutes": 5.0})
    path = tmp_path_factory.mktemp("gappy") / "gappy.nc"
    ds.to_netcdf(path)
    return path


def _forecast(*args) -> int:
    return main(["forecast", "--quicklook", "none", "--n-out", "3", *map(str, args)])


def test_single_issue_time_writes_a_cf_file(store, tmp_path):
    out = tmp_path / "f.nc"
    assert _forecast("--store", store, "--model", "extrapolation", "--issue-time", "2024-06-01T12:30",
                     "--output", out) == 0
    ds = open_forecast(out)
    assert dict(ds.sizes) == {"member": 1, "lead_time": 3, "y": SIZE, "x": SIZE}
    assert str(ds.forecast_reference_time.values)[:16] == "2024-06-01T12:30"
    assert str(ds.time.values[-1])[:16] == "2024-06-01T12:45"
    assert ds.attrs["model"] == "extrapolation" and ds.attrs["input_store"] == str(store)
    times = json.loads(ds.attrs["input_times"])
    assert times == [f"2024-06-01T12:{m}:00Z" for m in ("15", "20", "25", "30")]
    assert json.loads(ds.attrs["input_files"])[-1] == "synthetic-seed0-0006"
    assert "crs_wkt" in ds.crs.attrs


def test_ensemble_latest_zarr_crop_and_quicklooks(store, tmp_path):
    out = tmp_path / "ens.zarr"
    assert main(["forecast", "--store", str(store), "--model", "steps", "--members", "2", "--n-out", "2",
                 "--crop", "4,6,24,32", "--output", str(out), "--quicklook", "both"]) == 0
    ds = open_forecast(out)
    assert dict(ds.sizes) == {"member": 2, "lead_time": 2, "y": 24, "x": 32}
    assert str(ds.forecast_reference_time.values)[:16] == "2024-06-01T12:35"  # latest frame
    full = synthetic_event(n_frames=8, height=SIZE, width=SIZE)
    np.testing.assert_array_equal(ds.x.values, full.x.values[6:38])
    assert (tmp_path / "ens.png").is_file() and (tmp_path / "ens.gif").is_file()


def test_missing_frames_are_named(gappy_store, tmp_path, capsys):
    rc = _forecast("--store", gappy_store, "--model", "extrapolation", "--issue-time", "2024-06-01T12:35",
                   "--output", tmp_path / "f.nc")
    assert rc == 2
    err = capsys.readouterr().err
    assert "2024-06-01T12:25:00Z" in err and "missing input frames" in err
    assert not (tmp_path / "f.nc").exists()


def test_batch_skips_issue_times_without_inputs(gappy_store, tmp_path, caplog):
    out = tmp_path / "batch"
    assert _forecast("--store", gappy_store, "--model", "persistence", "--start", "first", "--end", "latest",
                     "--output", out) == 0
    names = sorted(p.name for p in out.iterdir())
    # persistence needs 1 frame: every stored frame is an issue time, the gap is skipped
    assert len(names) == 9 and "persistence_20240601T1225Z.nc" not in names
    assert "missing input frames 2024-06-01T12:25:00Z" in caplog.text
    ds = open_forecast(out / "persistence_20240601T1240Z.nc")
    assert str(ds.forecast_reference_time.values)[:16] == "2024-06-01T12:40"


def test_batch_with_extrapolation_every_second_step(store, tmp_path):
    out = tmp_path / "batch"
    assert _forecast("--store", store, "--model", "extrapolation", "--start", "first",
                     "--end", "2024-06-01T12:35", "--every", "2", "--output", out, "--format", "zarr") == 0
    # first issue time with 4 input frames is 12:15; then 12:25, 12:35
    assert sorted(p.name for p in out.iterdir()) == [
        f"extrapolation_20240601T12{m}Z.zarr" for m in ("15", "25", "35")]


def test_every_counts_back_from_the_end(store, tmp_path):
    import datetime as dt

    import numpy as np

    from nowcast.data.store import open_store

    last = open_store(store).time.values[-1]
    out = tmp_path / "batch"
    assert _forecast("--store", store, "--model", "persistence", "--start", "first", "--end", "latest",
                     "--every", "3", "--output", out, "--quicklook", "none") == 0
    stamps = sorted(np.datetime64(dt.datetime.strptime(p.stem.split("_")[1], "%Y%m%dT%H%MZ"), "m")
                    for p in out.iterdir())
    assert stamps[-1] == np.datetime64(last, "m")  # the latest frame gets its forecast
    assert all(b - a == np.timedelta64(15, "m") for a, b in zip(stamps, stamps[1:], strict=False))


def test_refuses_to_overwrite(store, tmp_path, capsys):
    out = tmp_path / "f.nc"
    args = ("--store", store, "--model", "persistence", "--output", out)
    assert _forecast(*args) == 0
    assert _forecast(*args) == 2 and "--overwrite" in capsys.readouterr().err
    assert _forecast(*args, "--overwrite") == 0


def test_an_interrupted_batch_is_resumed(store, tmp_path, capsys):
    """A batch stopped half way (here: one forecast file gone, its quicklook left) was refused as
    a whole without --overwrite, which recomputes everything; --resume forecasts only the issue
    times whose files are not all there, and refuses a folder made with other settings."""
    out = tmp_path / "batch"
    batch = ("--store", store, "--start", "first", "--end", "latest", "--output", out)
    assert main(["forecast", "--model", "extrapolation", "--n-out", "3", *map(str, batch)]) == 0
    files = sorted(out.iterdir())
    assert [p.suffix for p in files] == [".nc", ".png"] * 5
    finished = {p: p.stat().st_mtime_ns for p in files[2:]}
    files[0].unlink()  # the first issue time's forecast lost, its quicklook left
    capsys.readouterr()
    assert main(["forecast", "--model", "extrapolation", "--n-out", "3", *map(str, batch)]) == 2
    assert "--resume to continue a batch" in capsys.readouterr().err
    assert main(["forecast", "--model", "extrapolation", "--n-out", "3", "--resume", *map(str, batch)]) == 0
    assert sorted(out.iterdir()) == files and files[0].exists()
    assert {p: p.stat().st_mtime_ns for p in files[2:]} == finished  # not forecast again
    files[2].write_bytes(files[2].read_bytes()[:300])  # a forecast damaged since: forecast again
    assert main(["forecast", "--model", "extrapolation", "--n-out", "3", "--resume", *map(str, batch)]) == 0
    assert open_forecast(files[2]).sizes["lead_time"] == 3
    for other in (["--model", "extrapolation", "--n-out", "2"],
                  ["--model", "extrapolation", "--n-out", "3", "--overwrite"]):
        assert main(["forecast", *other, "--resume", *map(str, batch)]) == 2
    err = capsys.readouterr().err
    assert "with 1 member(s) and 3 lead times, this run asks for extrapolation with 1 and 2" in err
    assert "--resume keeps the finished forecasts, --overwrite replaces them: give one" in err


def test_a_stochastic_forecast_does_not_depend_on_its_batch(store, tmp_path):
    """An issue time's members come from --seed and the issue time: forecast alone, within a batch
    of another range or size, or by a --resume, they are the same draws (the run's one generator
    made them depend on what came before in the run)."""
    args = ["--model", "steps", "--members", "2", "--seed", "7", "--quicklook", "none", "--n-out", "2",
            "--store", str(store)]
    assert main(["forecast", *args, "--start", "first", "--end", "latest", "--output",
                 str(tmp_path / "batch")]) == 0
    assert main(["forecast", *args, "--start", "2024-06-01T12:25", "--end", "latest", "--batch-size", "1",
                 "--output", str(tmp_path / "tail")]) == 0
    one = tmp_path / "one.nc"
    assert main(["forecast", *args, "--issue-time", "2024-06-01T12:30", "--output", str(one)]) == 0
    batch = {p.name: open_forecast(p).rain_rate.values for p in (tmp_path / "batch").iterdir()}
    name = "steps_20240601T1230Z.nc"
    np.testing.assert_array_equal(open_forecast(one).rain_rate.values, batch[name])
    for p in (tmp_path / "tail").iterdir():
        np.testing.assert_array_equal(open_forecast(p).rain_rate.values, batch[p.name])
    assert not np.array_equal(batch[name], batch["steps_20240601T1235Z.nc"])
    (tmp_path / "batch" / name).unlink()
    assert main(["forecast", *args, "--start", "first", "--end", "latest", "--resume",
                 "--output", str(tmp_path / "batch")]) == 0
    np.testing.assert_array_equal(open_forecast(tmp_path / "batch" / name).rain_rate.values, batch[name])


def test_bad_inputs_are_clear_errors(store, tmp_path, capsys):
    assert _forecast("--store", tmp_path / "nowhere.zarr", "--output", tmp_path / "f.nc") == 2
    assert "rain store not found" in capsys.readouterr().err
    assert _forecast("--store", store, "--crop", "100", "--output", tmp_path / "f.nc") == 2
    assert "does not fit" in capsys.readouterr().err
    assert _forecast("--store", store, "--start", "first", "--output", tmp_path / "f.nc") == 2
    assert "needs a folder" in capsys.readouterr().err


def test_embedded_synthetic_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NOWCAST_SHARED", str(tmp_path / "no-shared"))  # force the synthetic default
    out = tmp_path / "default.nc"
    assert _forecast("--model", "persistence", "--crop", "32", "--cache-dir", tmp_path / "cache",
                     "--output", out) == 0
    ds = open_forecast(out)
    assert ds.sizes["x"] == 32 and "synthetic" in ds.attrs["input_store"]


@pytest.mark.realdata
def test_input_dir_is_ingested_on_the_fly(shared_radar, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in sorted((shared_radar / "pysteps" / "mch" / "20160711").glob("*.gif"))[:2]:
        shutil.copy(f, raw)
    out = tmp_path / "mch.nc"
    assert _forecast("--input-dir", raw, "--coarsen", "2", "--model", "persistence", "--crop", "32",
                     "--output", out) == 0
    ds = open_forecast(out)
    assert ds.sizes["x"] == 32 and "ingested on the fly" in ds.attrs["input_origin"]
    assert json.loads(ds.attrs["input_files"])[0].startswith("AQC")



@pytest.mark.realdata
def test_a_truncated_raw_file_is_named_when_it_is_skipped(shared_radar, tmp_path, caplog):
    """The on-the-fly ingest skips an unreadable file; the forecast then lacks that frame, and the
    log says which file was skipped and why, before the missing frame is reported."""
    raw = tmp_path / "raw"
    raw.mkdir()
    files = sorted((shared_radar / "pysteps" / "mch" / "20160711").glob("*.gif"))[:3]
    for f in files:
        shutil.copy(f, raw)
    broken = raw / files[1].name
    broken.write_bytes(broken.read_bytes()[:200])
    caplog.set_level("WARNING", logger="nowcast")
    assert _forecast("--input-dir", raw, "--coarsen", "2", "--model", "persistence", "--crop", "32",
                     "--output", tmp_path / "mch.nc") == 0   # persistence needs only the last frame
    assert any(r.levelname == "WARNING" and f"skipped {broken.name}" in r.getMessage()
               for r in caplog.records)

def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["forecast", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--store", "--input-dir", "--issue-time", "--start", "--end", "--model",
                   "--members", "--n-out", "--output", "--quicklook", "--crop", "--device", "--overwrite"):
        assert option in text
