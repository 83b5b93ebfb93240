"""`nowcast motion`: motion caches for the windows of a store or a data config's splits."""

from __future__ import annotations

import numpy as np

from nowcast.cli import main as cli_main
from nowcast.data.motion_cache import MotionCache
from nowcast.data.synthetic import write_synthetic_store
from nowcast.fsutil import WriterLock


def test_motion_cache_covers_every_window_anchor_and_resumes(tmp_path, capsys):
    store = write_synthetic_store(tmp_path / "syn.zarr", n_frames=10, height=32, width=32, seed=2)
    argv = ["motion", "--store", str(store), "--n-in", "4", "--n-out", "2", "--no_progress"]
    assert cli_main(argv) == 0
    cache = MotionCache(tmp_path / "syn.motion.zarr")
    # 10 frames, 4 past + 2 future: windows start at frames 0..4, anchors are frames 3..7
    import xarray as xr

    times = xr.open_zarr(store).time.values.astype("datetime64[ns]")
    np.testing.assert_array_equal(np.sort(cache.times), times[3:8])
    assert cli_main(argv) == 0  # everything cached: nothing recomputed, nothing duplicated
    assert len(MotionCache(tmp_path / "syn.motion.zarr").times) == 5


def test_motion_refuses_unknown_splits_and_mixed_selections(tmp_path, capsys):
    assert cli_main(["motion", "--data", "configs/data/synthetic.yaml", "--splits", "nope"]) == 2
    assert "not in the data config" in capsys.readouterr().err
    assert cli_main(["motion", "--data", "configs/data/synthetic.yaml", "--start", "2024-01-01"]) == 2
    assert "--start/--end" in capsys.readouterr().err


def test_motion_refuses_a_second_build_of_a_cache_in_one_line(tmp_path, capsys):
    store = write_synthetic_store(tmp_path / "syn.zarr", n_frames=10, height=32, width=32, seed=2)
    argv = ["motion", "--store", str(store), "--n-in", "4", "--n-out", "2", "--no_progress"]
    with WriterLock(tmp_path / "syn.motion.zarr", command="test holder"):
        assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "syn.motion.zarr").exists()
    line, = [ln for ln in err.splitlines() if "being written" in ln]
    assert line.startswith("nowcast motion: error:") and "syn.motion.zarr" in line and "test holder" in line
