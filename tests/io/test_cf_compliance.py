"""The IOOS compliance-checker (CF 1.10) on a forecast file of every network's grid and on a store
exported to netCDF: no errors, except the checker's own mistake on oblique Mercator (below)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from radar_events import EVENTS

from data_pipelines.ingest import ingest_files
from data_pipelines.store import export_netcdf
from nowcast.data.store import open_store
from nowcast.io.cf import Provenance, forecast_dataset, write_forecast
from nowcast.schema import RAIN

pytest.importorskip("compliance_checker", reason="compliance-checker is a dev dependency (.[dev])")

#: the checker asks oblique_mercator for an attribute "azimuth"; CF (Appendix F, cf-conventions PR #86)
#: names it azimuth_of_central_line, which the MeteoSwiss grid carries
CHECKER_MISTAKES = {"azimuth is a required attribute for grid mapping oblique_mercator"}



def cf_errors(path: Path, tmp_path: Path) -> list[str]:
    """The messages of the checker's high-priority (error) results for CF 1.10."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.name}.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.10"], 0, "normal", output_filename=str(report),
                                  output_format="json")
    results = json.loads(report.read_text())["cf:1.10"]
    return [msg for r in results["high_priorities"] for msg in r["msgs"]]


@pytest.fixture(params=sorted(EVENTS))
def network_store(request, shared_radar: Path, tmp_path: Path) -> Path:
    files = sorted(p for p in (shared_radar / EVENTS[request.param]).iterdir() if p.is_file())[20:21]
    store = tmp_path / f"{request.param}.zarr"
    assert ingest_files(files, store, coarsen=8, progress=False).n_frames == 1
    return store


def test_forecast_file_of_every_network_is_cf_compliant(network_store: Path, tmp_path: Path) -> None:
    ds = open_store(network_store)
    last = ds[RAIN].values[-1]
    rain = np.repeat(np.nan_to_num(last)[None, None], 3, axis=1).repeat(2, axis=0)  # (2 members, 3 leads)
    prov = Provenance(forecaster={"model": "persistence"}, input_store=str(network_store),
                      input_times=ds.time.values[-1:])
    out = forecast_dataset(rain, ds.time.values[-1], np.timedelta64(5, "m"), ds, prov, np.isfinite(last))
    assert out.lat.shape == last.shape and -90 <= float(out.lat.min()) <= float(out.lat.max()) <= 90
    path = write_forecast(out, tmp_path / "f.nc")
    assert set(cf_errors(path, tmp_path)) <= CHECKER_MISTAKES


def test_store_exported_to_netcdf_is_cf_compliant(network_store: Path, tmp_path: Path) -> None:
    path = export_netcdf(network_store, tmp_path / "store.nc")
    assert set(cf_errors(path, tmp_path)) <= CHECKER_MISTAKES
