"""nowcast: weather-radar precipitation nowcasting.

Data flow (each stage imports only from stages to its left, plus ``types``/``registry``/``schema``):

raw radar files -> ``data_pipelines`` (ingest) -> CF zarr/netCDF store -> ``nowcast.data``
-> Forecaster (``nowcast.models``) -> ``nowcast.io`` (CF forecast files) / ``nowcast.evaluation``.
"""

__version__ = "0.1.0"
