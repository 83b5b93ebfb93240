"""Synthetic event realism, the motion cache (vs on-the-fly pysteps), and a tiny real store."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr.storage

from nowcast.data import motion_cache
from nowcast.data.dataset import RadarWindowDataset
from nowcast.data.motion_cache import (
    MotionCache,
    build_motion_cache,
    coarsen_motion,
    motion_cache_path,
    upsample_motion,
)
from nowcast.data.synthetic import synthetic_event, synthetic_motion, write_synthetic_store
from nowcast.data.windows import store_windows
from nowcast.fsutil import LockedError, WriterLock
from nowcast.schema import validate_rain_dataset
from nowcast.types import MOTION


def test_synthetic_event_is_realistic() -> None:
    from pysteps.utils.spectral import rapsd

    from nowcast.data.motion import estimate_motion

    ds = synthetic_event(n_frames=8, height=128, width=128, seed=5)
    validate_rain_dataset(ds)
    assert ds.attrs["timestep_minutes"] == 5.0 and ds.attrs["pixel_size_m"] == 2000.0
    rain = ds.rain_rate.values
    covered = np.isfinite(rain[0])
    assert 0.5 < covered.mean() < 0.9 and not covered[0, 0]  # circular-ish footprint
    wet = rain[:, covered]
    # a rainy event like MCH/FMI in the README table: 5-35 % at >= 0.5 mm/h, cores of tens of mm/h
    assert 0.05 < (wet >= 0.5).mean() < 0.35 and 0.002 < (wet >= 8).mean() < 0.05
    assert 15.0 < np.nanmax(rain) <= 120.0 and np.nanmin(rain) == 0.0
    # rain-field spectrum: log-log slope of the radially averaged PSD over 8-128 km, real rain ~ -2..-3.5
    field = np.nan_to_num(rain[0])
    psd, freq = rapsd(field, fft_method=np.fft, return_freq=True)
    sel = (freq > 1 / 64) & (freq < 1 / 4)
    slope = np.polyfit(np.log(freq[sel]), np.log(psd[sel]), 1)[0]
    assert -3.6 < slope < -1.8, slope
    # growth and decay: the field changes beyond pure advection; and motion is recoverable
    true = synthetic_motion(128, 128, seed=5)
    est = estimate_motion(rain[:4])
    err = np.abs(est - true)[:, covered].mean()
    assert err < 0.35 * np.abs(true).mean(), err
    assert not np.allclose(ds.rain_fraction.values[0], ds.rain_fraction.values[-1])
    np.testing.assert_array_equal(synthetic_event(n_frames=8, seed=5).rain_rate.values, rain)  # seeded
    assert not np.array_equal(synthetic_event(n_frames=8, seed=6).rain_rate.values, rain, equal_nan=True)


def test_coarsen_upsample_round_trip_on_smooth_field() -> None:
    rows, cols = np.mgrid[0:61, 0:47].astype(np.float32)
    m = np.stack([0.05 * rows + 1.0, -0.03 * cols + 0.01 * rows])  # linear: bilinear is exact inside
    back = upsample_motion(coarsen_motion(m, 4), 4, 61, 47)
    assert back.shape == m.shape
    np.testing.assert_allclose(back[:, 2:-6, 2:-6], m[:, 2:-6, 2:-6], atol=1e-4)


def test_motion_cache_build_resume_and_read(syn_store) -> None:
    from nowcast.data.motion import estimate_motion

    ds = xr.open_zarr(syn_store)
    times = ds.time.values
    path = build_motion_cache(syn_store, n_in=4, coarsen=4, times=times[3:6], progress=False)
    assert path == motion_cache_path(syn_store) and path.name == "syn.motion.zarr"
    assert len(MotionCache(path).times) == 3
    build_motion_cache(syn_store, n_in=4, coarsen=4, progress=False)  # resumes: adds the rest
    cache = MotionCache(path)
    assert sorted(cache.times) == list(times[3:]) and len(cache.times) == len(times) - 3
    cached = cache.read(times[10])
    direct = estimate_motion(ds.rain_rate.values[7:11])
    covered = np.isfinite(ds.rain_rate.values[0])
    assert np.abs(cached - direct)[:, covered].mean() < 0.1 * np.abs(direct).mean() + 0.05
    with pytest.raises(ValueError, match="n_in"):
        build_motion_cache(syn_store, n_in=3, progress=False)
    # the dataset crops the cached field like the rain
    windows = store_windows("s", ds, 4, 2)
    item = RadarWindowDataset({"s": syn_store}, windows, 4, 2, crop_size=32, with_motion=True)[7]
    y0, x0 = item["origin"].tolist()
    np.testing.assert_allclose(item[MOTION].numpy(), cache.read(windows[7].anchor)[:, y0:y0 + 32, x0:x0 + 32])


def _small_store(folder: Path) -> Path:
    """The reviewer's store: 10 frames of 32x32 (anchors 12:15 .. 12:45 for n_in=4), same in every folder."""
    return write_synthetic_store(folder / "s.zarr", n_frames=10, height=32, width=32, seed=0)


def _fields(cache_path: Path) -> dict[np.datetime64, np.ndarray]:
    cache = MotionCache(cache_path)
    assert len(set(cache.times)) == len(cache.times)  # no anchor twice
    return {t: np.asarray(cache.ds["motion"].sel(time=t).values) for t in cache.times}


@pytest.fixture(scope="module")
def clean_fields(tmp_path_factory) -> dict[np.datetime64, np.ndarray]:
    """Every anchor's field of :func:`_small_store`, built in one uninterrupted run."""
    store = _small_store(tmp_path_factory.mktemp("clean"))
    fields = _fields(build_motion_cache(store, n_in=4, coarsen=4, progress=False, flush_every=2))
    assert len(fields) == 7 and all(np.isfinite(f).all() for f in fields.values())
    return fields


def _assert_equals_clean(cache_path: Path, clean: dict[np.datetime64, np.ndarray]) -> None:
    fields = _fields(cache_path)
    assert sorted(fields) == sorted(clean)
    for t, field in clean.items():
        np.testing.assert_array_equal(fields[t], field, err_msg=str(t))


@pytest.mark.parametrize("failing_flush", [1, 2], ids=["create", "append"])
def test_disk_full_during_a_flush_leaves_no_anchor_without_field(failing_flush, tmp_path, monkeypatch,
                                                                 clean_fields) -> None:
    """The disk fills up while a batch's motion chunks are written (its time coordinate may be
    on disk already): the anchors of that batch must not count as done, the next build computes them."""
    store = _small_store(tmp_path)
    cache_path = motion_cache_path(store)
    flushes, set_key = [], zarr.storage.LocalStore.set

    async def disk_full_on_motion_chunks(self, key, value):
        motion_chunk = key.startswith("motion/") and not key.rsplit("/", 1)[1].startswith(".")
        if motion_chunk and len(flushes) == failing_flush:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return await set_key(self, key, value)

    def counting_append(*args, **kwargs):
        flushes.append(1)
        return append(*args, **kwargs)

    append = motion_cache._append
    monkeypatch.setattr(zarr.storage.LocalStore, "set", disk_full_on_motion_chunks)
    monkeypatch.setattr(motion_cache, "_append", counting_append)
    with pytest.raises(OSError, match="No space left"):
        build_motion_cache(store, n_in=4, coarsen=4, progress=False, flush_every=2)
    monkeypatch.undo()
    # readers already see only the committed batches, with their fields
    listed = _fields(cache_path) if cache_path.exists() else {}
    assert len(listed) == 2 * (failing_flush - 1) and all(np.isfinite(f).all() for f in listed.values())

    build_motion_cache(store, n_in=4, coarsen=4, progress=False, flush_every=2)  # resumes
    _assert_equals_clean(cache_path, clean_fields)
    assert not [p.name for p in tmp_path.rglob("*") if p.suffix == ".lock" or "tmp-" in p.name
                or "journal" in p.name]


def _old_writer_cache(cache_path: Path, fields: dict[np.datetime64, np.ndarray],
                      listed: list[np.datetime64]) -> None:
    """A cache as the writer before journalled appends left it (no consolidated metadata)."""
    ds = xr.Dataset({"motion": (("time", "component", "yc", "xc"), np.stack([fields[t] for t in listed]))},
                    coords={"time": listed, "component": ["u", "v"]},
                    attrs={"n_in": 4, "method": "LK", "coarsen": 4, "height": 32, "width": 32})
    ds["motion"].encoding["chunks"] = (1, 2, 8, 8)
    ds.to_zarr(cache_path, mode="w", zarr_format=2, consolidated=False)


def test_a_cache_damaged_before_journals_is_repaired(tmp_path, caplog, clean_fields) -> None:
    """A cache of the old writer listing an anchor whose chunk was never written, and an anchor
    twice (two concurrent builds)."""
    store = _small_store(tmp_path)
    cache_path = motion_cache_path(store)
    times = sorted(clean_fields)
    _old_writer_cache(cache_path, clean_fields, [*times, times[1]])
    (cache_path / "motion" / "4.0.0.0").unlink()  # times[4]: listed, its field NaN
    with pytest.raises(ValueError, match="never written"):
        MotionCache(cache_path).read(times[4])  # not handed to a model as NaN

    with caplog.at_level(logging.WARNING):
        build_motion_cache(store, n_in=4, coarsen=4, progress=False)
    assert "2 of its 8 entries dropped" in caplog.text and str(times[4])[:16] in caplog.text
    _assert_equals_clean(cache_path, clean_fields)


def test_a_cache_torn_before_journals_is_refused_in_one_line(tmp_path, clean_fields) -> None:
    store = _small_store(tmp_path)
    cache_path = motion_cache_path(store)
    _old_writer_cache(cache_path, clean_fields, sorted(clean_fields))
    zarray = cache_path / "time" / ".zarray"  # the old writer killed between resizing its arrays
    zarray.write_text(json.dumps({**json.loads(zarray.read_text()), "shape": [5]}))
    with pytest.raises(ValueError, match="s.motion.zarr is unreadable .*; delete it to rebuild"):
        build_motion_cache(store, n_in=4, coarsen=4, progress=False)


def test_a_cache_begun_with_one_anchor_keeps_exact_times(tmp_path, clean_fields) -> None:
    store = _small_store(tmp_path)
    times = sorted(clean_fields)
    build_motion_cache(store, n_in=4, coarsen=4, times=times[2:3], progress=False)
    cache_path = build_motion_cache(store, n_in=4, coarsen=4, progress=False)
    _assert_equals_clean(cache_path, clean_fields)


def test_second_build_refused_while_one_writes(tmp_path) -> None:
    store = _small_store(tmp_path)
    cache_path = build_motion_cache(store, n_in=4, coarsen=4, times=[np.datetime64("2024-06-01T12:15")],
                                    progress=False)
    with WriterLock(cache_path, command="nowcast motion (test holder)"), \
            pytest.raises(LockedError, match="being written by pid .*test holder"):
        build_motion_cache(store, n_in=4, coarsen=4, progress=False)
    assert len(MotionCache(cache_path).times) == 1
    build_motion_cache(store, n_in=4, coarsen=4, progress=False)  # the lock is free again
    assert len(MotionCache(cache_path).times) == 7


def test_cached_motion_needs_no_pysteps(syn_store) -> None:
    build_motion_cache(syn_store, n_in=4, coarsen=4, progress=False)
    code = (
        "import sys; sys.modules['pysteps'] = None\n"  # any pysteps import now fails
        "import xarray as xr\n"
        "from nowcast.data.dataset import RadarWindowDataset\n"
        "from nowcast.data.windows import store_windows\n"
        f"p = {str(syn_store)!r}\n"
        "w = store_windows('s', xr.open_zarr(p), 4, 2)\n"
        "d = RadarWindowDataset({'s': p}, w, 4, 2, crop_size=32, random_crop=True, augment=True,\n"
        "                       with_motion=True)\n"
        "print(tuple(d[0]['motion'].shape))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(2, 32, 32)" in out.stdout


def test_tiny_real_mch_store(shared_radar, tmp_path) -> None:
    ingest = pytest.importorskip("data_pipelines.ingest", reason="data_pipelines.ingest not available")
    files = sorted((shared_radar / "pysteps" / "mch" / "20160711").glob("AQC*.gif"))[:6]
    if len(files) < 6:
        pytest.skip("MCH 2016-07-11 files not found")
    store = tmp_path / "mch.zarr"
    ingest.ingest_files(files, store, source="mch", coarsen=2, progress=False)
    from nowcast.data.store import open_store

    ds = open_store(store)
    windows = store_windows("mch", ds, n_in=2, n_out=2)
    assert len(windows) == 3
    item = RadarWindowDataset({"mch": store}, windows, 2, 2, crop_size=64, random_crop=True, augment=True)[0]
    assert item["past"].shape == (2, 64, 64) and item["mask"].any()
    assert float(item["future"].max()) > 1.0  # the crop prefers the convective rain of that evening
