"""Copy the radar-mix stores and motion caches into `.gpu/stores/radar-mix` for the lent GPU machine.

The GPU machine has no pysteps and only the checkout plus 64 MiB of carried files travel, so
the copy recompresses rain with zstd+bitshuffle and packs motion as int16 (0.004 px steps,
+-131 px range; the largest value in the caches is ~40 px). Then, in the repository root:
    ../shared/gpu/prepare.sh jsonargparse==4.53.0 docstring-parser==0.17.0 typeshed-client==2.8.2
    mkdir -p .gpu/whl && cp .whl/{zarr,numcodecs,donfig,google_crc32c,msgspec,jsonargparse,\
docstring_parser,typeshed_client,importlib_resources}-*.whl .gpu/whl/
and run one of the scripts beside this file on the device with `.gpu` carried.
pysteps has no wheel for the device's Python; the one module of it that training uses (the BPS
motion perturbation, `pysteps.noise.motion`: numpy and scipy only) is copied from the installed
pysteps into `.gpu/site/pysteps/noise/` for those scripts to put on PYTHONPATH there.
"""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pysteps.noise.motion
import xarray as xr
from numcodecs import Blosc

warnings.simplefilter("ignore")
SRC, DST = Path("stores/radar-mix"), Path(".gpu/stores/radar-mix")
COMP = Blosc(cname="zstd", clevel=9, shuffle=Blosc.BITSHUFFLE)


def copy_bps_module() -> None:
    """pysteps.noise.motion alone, as a package the device imports without the rest of pysteps."""
    site = Path(".gpu/site/pysteps")
    shutil.rmtree(site, ignore_errors=True)
    (site / "noise").mkdir(parents=True)
    (site / "__init__.py").write_text('"""Only pysteps.noise.motion (prepare_gpu_bundle.py)."""\n')
    (site / "noise" / "__init__.py").write_text("")
    shutil.copy(pysteps.noise.motion.__file__, site / "noise" / "motion.py")


def main() -> None:
    copy_bps_module()
    shutil.rmtree(DST, ignore_errors=True)
    DST.mkdir(parents=True)
    for name in ["knmi", "fmi", "mch", "rmi"]:
        ds = xr.open_zarr(SRC / f"{name}.zarr", consolidated=None)
        for v in ds.variables:
            ds[v].encoding.pop("compressors", None)
            ds[v].encoding.pop("compressor", None)
        enc = {v: {"compressors": (COMP,)} for v in ds.data_vars if v != "crs"}
        ds.to_zarr(DST / f"{name}.zarr", mode="w", encoding=enc, zarr_format=2, consolidated=True)
        m = xr.open_zarr(SRC / f"{name}.motion.zarr", consolidated=None).load()
        for v in m.variables:
            m[v].encoding = {}
        menc = {"motion": {"dtype": "int16", "scale_factor": 0.004, "_FillValue": -32768,
                           "compressors": (COMP,)}}
        m.to_zarr(DST / f"{name}.motion.zarr", mode="w", encoding=menc, zarr_format=2, consolidated=True)
        err = np.abs(xr.open_zarr(DST / f"{name}.motion.zarr").motion.values - m.motion.values).max()
        print(f"{name}: motion packed, max abs error {err:.4f} px")


if __name__ == "__main__":
    main()
