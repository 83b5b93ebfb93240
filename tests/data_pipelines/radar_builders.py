"""Radar products the shared folder lacks, built from its real files: KNMI accumulations in the
layout of ``RAD_NL25_RAP_5min_*.h5`` and BOM ``prcp-c10`` files (10-minute accumulations)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

#: KNMI's projection of its accumulation products (RAD_NL25_RAP_5min): an Earth ellipsoid in km,
#: so the importer's x/y come out in km
KNMI_KM_PROJ = "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
#: KNMI's raw codes of an accumulation: "missing data" and "out of image"
KNMI_MISSING, KNMI_OUTSIDE = 65534, 65535


def knmi_accumulation_counts(reflectivity: Path) -> np.ndarray:
    """(765, 700) uint16 raw counts (0.01 mm in 5 min) of a KNMI reflectivity file's rain
    (Marshall-Palmer), its outside-the-composite pixels out of image, a 10 x 10 block missing."""
    import h5py

    from data_pipelines.importers import dbz_to_rain_rate

    with h5py.File(reflectivity, "r") as f:
        raw = f["image1/image_data"][:]
    mm = dbz_to_rain_rate(0.5 * raw - 32.0) * 5.0 / 60.0
    counts = np.round(mm * 100).astype(np.uint16)
    counts[raw == 255] = KNMI_OUTSIDE
    counts[300:310, 300:310] = KNMI_MISSING
    return counts


def write_knmi_accumulation(reflectivity: Path, out: Path, counts: np.ndarray | None = None,
                            parameter: str = "ACCUMULATED_PRECIPITATION_[MM]",
                            formula: str = "GEO = 0.010000 * PV + 0.000000",
                            product: str = "RAD_NL25_RAP_5min", minutes: float = 5.0,
                            projection: str = KNMI_KM_PROJ) -> Path:
    """A KNMI accumulation file in the layout of ``RAD_NL25_RAP_5min_*.h5``, built from a real
    reflectivity file (same groups and geography) with the image, its quantity, calibration,
    no-data codes, product name, times and projection edited. ``out`` names the file."""
    import shutil

    import h5py

    shutil.copyfile(reflectivity, out)
    with h5py.File(out, "r+") as f:
        image = f["image1"]
        del image["image_data"]
        image.create_dataset("image_data", data=knmi_accumulation_counts(reflectivity) if counts is None
                             else counts)
        image.attrs["image_geo_parameter"] = np.bytes_(parameter)
        image.attrs["image_product_name"] = np.bytes_(product)
        calibration = image["calibration"].attrs
        calibration["calibration_formulas"] = np.bytes_(formula)
        calibration["calibration_missing_data"] = np.array([KNMI_MISSING], dtype=np.int32)
        calibration["calibration_out_of_image"] = np.array([KNMI_OUTSIDE], dtype=np.int32)
        overview = f["overview"].attrs
        end = dt.datetime.strptime(overview["product_datetime_end"].decode(), "%d-%b-%Y;%H:%M:%S.%f")
        start = end - dt.timedelta(minutes=minutes)
        overview["product_datetime_start"] = np.bytes_(start.strftime("%d-%b-%Y;%H:%M:%S.000").upper())
        overview["product_group_name"] = np.bytes_(product)
        f["geographic/map_projection"].attrs["projection_proj4_params"] = np.bytes_(projection)
    return out


def write_bom_c10(cscn_files: list[Path], folder: Path, start: dt.datetime) -> list[Path]:
    """BOM ``prcp-c10`` files (10-minute accumulations, 10 minutes apart from ``start``): copies of
    real ``prcp-cscn`` files with their valid and start times edited, named as BOM names them."""
    import shutil

    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(cscn_files):
        valid = start + dt.timedelta(minutes=10 * i)
        path = folder / f"2_{valid:%Y%m%d_%H%M%S}.prcp-c10.nc"
        shutil.copyfile(src, path)
        with netCDF4.Dataset(path, "r+") as nc:
            epoch = int(valid.replace(tzinfo=dt.timezone.utc).timestamp())
            nc["valid_time"][...] = epoch
            nc["start_time"][...] = epoch - 600
        out.append(path)
    return out
