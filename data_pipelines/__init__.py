"""Raw radar files -> CF rain-rate stores (no torch here).

- :mod:`data_pipelines.sources`: registry of radar sources (pysteps importer, file names, times);
- :mod:`data_pipelines.importers`: read and convert one file to a mm/h frame on its grid;
- :mod:`data_pipelines.store`: zarr writing (create / append / safe merge) and netCDF export;
- :mod:`data_pipelines.ingest`: ``ingest_files``, ``ingest_folder``, ``build_stores`` (a config's set
  of stores, configs/ingest/*.yaml).
"""
