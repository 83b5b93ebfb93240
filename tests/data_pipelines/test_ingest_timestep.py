"""Time step (issue 11, item 6): measured from the frames' times, checked against what the source
declares, stored; every product of a network's importer (BOM ``prcp-c10``, FMI ``.pgm``) found
by folder."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import numpy as np
import pytest
from radar_builders import write_bom_c10

from data_pipelines.ingest import ingest_files
from data_pipelines.sources import find_files, get_source
from nowcast.commands import ingest as ingest_cmd
from nowcast.data.store import open_store
from nowcast.schema import timestep

pytestmark = pytest.mark.realdata


def test_bom_10_minute_files_found_by_folder_and_source(event_files, tmp_path, capsys):
    root = tmp_path / "prcp-c10"
    files = write_bom_c10(event_files("bom", 4), root / "2/2018/06/16", dt.datetime(2018, 6, 16, 12, 0))
    assert find_files(root, get_source("bom")) == files and find_files(root) == files
    for store, source in ((tmp_path / "by-source.zarr", ["--source", "bom"]),
                          (tmp_path / "detected.zarr", [])):
        assert ingest_cmd.main([str(root), "--store", str(store), *source]) == 0
        out = capsys.readouterr().out
        assert "4 frame(s) ingested" in out and "warning" not in out, out
        ds = open_store(store)
        assert ds.attrs["timestep_minutes"] == 10.0 and ds.attrs["timestep_declared_minutes"] == 10.0
        assert "accumulation (mm) over 10 min" in ds.attrs["conversion"]
        assert timestep(ds) == np.timedelta64(600, "s")


def test_measured_step_is_stored_and_a_different_declared_step_named(event_files, tmp_path):
    files = event_files("mch", 9)[::2]  # 10 minutes apart ...
    del files[2]  # ... with one gap, which must not change the step
    report = ingest_files(files, tmp_path / "s.zarr")
    assert report.ok and len(report.ingested) == 4
    assert report.warnings == ["s.zarr: frames are 10 min apart, but source mch, AQC 5-min rain "
                               "accumulation declares 5 min; stored the measured 10 min"]
    assert "  warning: s.zarr: frames are 10 min apart" in report.summary()
    ds = open_store(tmp_path / "s.zarr")
    assert ds.attrs["timestep_minutes"] == 10.0 and timestep(ds) == np.timedelta64(600, "s")


def test_step_of_a_one_frame_store_is_measured_when_frames_arrive(event_files, tmp_path):
    files = event_files("mch", 5)
    store = tmp_path / "s.zarr"
    assert ingest_files(files[:1], store).warnings == []
    assert open_store(store).attrs["timestep_minutes"] == 5.0  # one frame: the declared step
    first = open_store(store).rain_rate.values[0]
    report = ingest_files(files[2::2], store)  # now 10 minutes apart
    assert report.warnings and "frames are 10 min apart" in report.warnings[0]
    ds = open_store(store)
    assert ds.attrs["timestep_minutes"] == 10.0
    assert json.loads((store / ".zattrs").read_text())["timestep_minutes"] == 10.0
    np.testing.assert_array_equal(ds.rain_rate.values[0], first)
    assert ingest_files(files[:1], store).warnings == []  # nothing new, nothing to say


def test_uncompressed_fmi_files_found_by_folder(event_files, tmp_path):
    gzipped = event_files("fmi", 2)
    folder = tmp_path / "pgm"
    folder.mkdir()
    for f in gzipped:
        (folder / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    plain = find_files(folder)
    assert [p.name for p in plain] == [f.name.removesuffix(".gz") for f in gzipped]
    assert ingest_files(plain, tmp_path / "plain.zarr").ok and ingest_files(gzipped, tmp_path / "gz.zarr").ok
    np.testing.assert_array_equal(open_store(tmp_path / "plain.zarr").rain_rate.values,
                                  open_store(tmp_path / "gz.zarr").rain_rate.values)
