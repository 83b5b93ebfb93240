"""A set of stores built by one command (configs/ingest/*.yaml, data_pipelines.ingest.build_stores):
each network reaches the benchmark's one 2 km grid, a finer network through its own ``coarsen``."""

from __future__ import annotations

import pytest
import yaml
from test_ingest_grid_units import NETWORKS

from data_pipelines.ingest import StoreSpec, build_stores
from nowcast.data.store import open_store
from nowcast.types import repo_root

CONFIG = yaml.safe_load((repo_root() / "configs/ingest/radar-mix.yaml").read_text())


def test_store_spec_reads_its_own_coarsen_and_refuses_a_bad_one() -> None:
    spec = StoreSpec.from_config("bom", {"source": "bom", "folders": ["b"], "optional": True, "coarsen": 4})
    assert (spec.store, spec.optional, spec.coarsen) == ("bom.zarr", True, 4)
    assert StoreSpec.from_config("knmi", {"source": "knmi", "folders": ["k"]}).coarsen is None
    for bad in (0, 2.5, "4", True):
        with pytest.raises(ValueError, match="coarsen must be a whole number"):
            StoreSpec.from_config("bom", {"source": "bom", "folders": ["b"], "coarsen": bad})
    with pytest.raises(ValueError, match="expected keys"):
        StoreSpec.from_config("bom", {"source": "bom", "folders": ["b"], "coarsening": 4})


def test_the_benchmark_config_puts_every_network_on_2_km() -> None:
    for name, entry in CONFIG["stores"].items():
        spec = StoreSpec.from_config(name, entry)
        native_m = NETWORKS[spec.source][0]
        k = spec.coarsen if spec.coarsen is not None else CONFIG["coarsen"]
        assert native_m * k == 2000.0, f"{name}: {native_m} m x {k}"


@pytest.mark.realdata
def test_a_store_of_finer_pixels_is_built_on_the_same_grid(shared_radar, tmp_path) -> None:
    """BOM's 500 m frames, built beside 1 km networks by one command, land on 2 km pixels."""
    bom = next(iter(sorted((shared_radar / "pysteps/bom/prcp-cscn/2/2018/06/16").iterdir())))
    root = tmp_path / "radar"  # one file under the config's folder
    folder = root / CONFIG["stores"]["bom"]["folders"][0]
    folder.mkdir(parents=True)
    (folder / bom.name).symlink_to(bom)
    built = build_stores([StoreSpec.from_config("bom", CONFIG["stores"]["bom"])], tmp_path / "stores", root,
                         coarsen=CONFIG["coarsen"], include_optional=True)
    ds = open_store(built["bom"])
    assert ds.attrs["pixel_size_m"] == pytest.approx(2000.0) and ds.attrs["coarsen_factor"] == 4
    assert ds.sizes["y"] == ds.sizes["x"] == 128  # 512 x 512 pixels of 500 m


@pytest.mark.realdata
def test_another_coarsen_into_an_existing_store_skips_every_file_and_writes_nothing(event_files, tmp_path,
                                                                                    capsys) -> None:
    """Re-running an ingest with a changed ``coarsen`` found every time already stored and left the
    store on its old grid without a word; now every file is skipped with the reason (exit 1), as a
    new time on another grid always was, and the store is left as it was."""
    from nowcast.commands.ingest import main

    files = [str(f) for f in event_files("bom", 2)]
    store = tmp_path / "bom.zarr"
    assert main([*files[:1], "--store", str(store), "--coarsen", "4"]) == 0
    before = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    capsys.readouterr()
    assert main([*files, "--store", str(store), "--coarsen", "2"]) == 1  # one stored time, one new
    out = capsys.readouterr().out
    assert "2 skipped" in out and "averaged over 4x4 pixel blocks" in out and "coarsen=2" in out
    assert sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*")) == before
    (tmp_path / "plain").mkdir()  # a folder that is not a store: one line, not a traceback
    assert main([*files[:1], "--store", str(tmp_path / "plain"), "--coarsen", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a zarr store" in err
