"""Grid units (issue 11, item 5): every store is in metres, whatever unit the projection is in."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from pyproj import CRS, Transformer
from radar_builders import KNMI_KM_PROJ, write_knmi_accumulation

from data_pipelines.importers import grid_in_metres, projection_in_metres
from data_pipelines.ingest import ingest_files
from nowcast.data.store import open_store
from nowcast.types import repo_root

#: the README table of ../shared/radar: native pixel size (m), and (lon, lat) of the country the
#: grid covers (its centre lies within a few degrees, only if x/y are metres of its projection)
NETWORKS = {
    "knmi": (1000.0, (5.0, 52.3)),
    "fmi": (1000.0, (25.5, 64.0)),
    "mch": (1000.0, (8.2, 46.8)),
    "rmi": (1000.0, (4.5, 50.6)),
    "bom": (500.0, (144.9, -37.8)),
}
COARSEN = yaml.safe_load((repo_root() / "configs/ingest/radar-mix.yaml").read_text())["coarsen"]


def check_metres(store, pixel_m: float, lonlat: tuple[float, float]) -> None:
    ds = open_store(store)
    assert ds.x.attrs["units"] == "m" and ds.y.attrs["units"] == "m"
    for step in (np.diff(ds.x.values), -np.diff(ds.y.values)):
        np.testing.assert_allclose(step, pixel_m, rtol=1e-3)
    assert ds.attrs["pixel_size_m"] == pytest.approx(pixel_m, rel=1e-3)
    to_lonlat = Transformer.from_crs(CRS.from_wkt(ds.crs.attrs["crs_wkt"]), "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(ds.x.values.mean(), ds.y.values.mean())
    assert abs(lon - lonlat[0]) < 3.0 and abs(lat - lonlat[1]) < 3.0, (lon, lat)


@pytest.mark.realdata
@pytest.mark.parametrize("source", sorted(NETWORKS))
def test_every_network_is_stored_in_metres(source, event_files, tmp_path):
    report = ingest_files(event_files(source, 1), tmp_path / "s.zarr", source=source, coarsen=COARSEN)
    assert report.ok, report.summary()
    pixel_m, lonlat = NETWORKS[source]
    check_metres(tmp_path / "s.zarr", pixel_m * COARSEN, lonlat)


@pytest.mark.realdata
def test_knmi_grid_in_km_is_stored_in_metres(event_files, tmp_path):
    reflectivity = event_files("knmi", 1)[0]
    km_file = write_knmi_accumulation(reflectivity, tmp_path / f"RAD_NL25_RAP_5min_{reflectivity.stem}.h5")
    assert ingest_files([km_file], tmp_path / "km.zarr", coarsen=COARSEN).ok
    check_metres(tmp_path / "km.zarr", 1000.0 * COARSEN, NETWORKS["knmi"][1])
    # the very grid of KNMI's metre-defined reflectivity files, to the file's float32 precision
    assert ingest_files([reflectivity], tmp_path / "m.zarr", coarsen=COARSEN).ok
    km, m = open_store(tmp_path / "km.zarr"), open_store(tmp_path / "m.zarr")
    np.testing.assert_allclose(km.x.values, m.x.values, atol=5.0)
    np.testing.assert_allclose(km.y.values, m.y.values, atol=5.0)
    assert km.crs.attrs["crs_wkt"] == m.crs.attrs["crs_wkt"]


def test_projection_units_of_km_become_metres():
    assert projection_in_metres(KNMI_KM_PROJ) == (
        "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378137 +b=6356752 +x_0=0 +y_0=0")
    km = {"projection": "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +ellps=WGS84 +units=km",
          "x1": 0.0, "x2": 700.0, "y1": -4415.0, "y2": -3650.0, "xpixelsize": 1.0, "ypixelsize": 1.0,
          "cartesian_unit": "km"}
    metres = grid_in_metres(km)
    assert (metres["x2"], metres["y1"], metres["xpixelsize"]) == (700000.0, -4415000.0, 1000.0)
    assert metres["projection"].endswith("+units=m") and "+units=km" not in metres["projection"]
    # an importer that says metres on a projection in km: the scale is unknown, refused
    with pytest.raises(ValueError, match="refusing an ambiguous grid"):
        grid_in_metres({**km, "cartesian_unit": "m"})
    assert grid_in_metres({**km, "projection": "+proj=stere +lat_0=90 +ellps=WGS84",
                           "cartesian_unit": "m"})["x2"] == 700.0  # metres already: unchanged
