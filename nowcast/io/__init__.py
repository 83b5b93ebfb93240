"""Forecast output: CF netCDF/zarr files (:mod:`nowcast.io.cf`) and quicklook images
(:mod:`nowcast.io.quicklook`)."""

from __future__ import annotations

from nowcast.io.cf import (
    ForecastExistsError,
    OutputPathError,
    Provenance,
    check_output_folder,
    forecast_dataset,
    forecast_filename,
    open_forecast,
    write_forecast,
)

__all__ = [
    "ForecastExistsError",
    "OutputPathError",
    "Provenance",
    "check_output_folder",
    "forecast_dataset",
    "forecast_filename",
    "open_forecast",
    "write_forecast",
]
