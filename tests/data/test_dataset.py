"""Crops, augmentation (incl. motion vectors), rain-preferring sampling, multi-worker loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from nowcast.data.datamodule import NowcastDataModule, from_config
from nowcast.data.dataset import RadarWindowDataset, augment, centre_crop, choose_rainy_crop
from nowcast.data.windows import store_windows
from nowcast.types import FUTURE, MASK, MOTION, PAST

torch.set_num_threads(1)


def _shift(a: np.ndarray, u: int, v: int) -> np.ndarray:
    """Advect by an integer motion: content at (r, c) moves to (r + v, c + u)."""
    return np.roll(a, (v, u), axis=(-2, -1))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_augment_commutes_with_advection(flip: bool, turns: int) -> None:
    rows, cols = np.mgrid[0:32, 0:32]
    blob = np.exp(-((rows - 10) ** 2 + (cols - 7) ** 2) / 8.0) + 0.5 * (rows > 25) * (cols < 4)
    u, v = 3, -2
    frames = np.stack([blob, _shift(blob, u, v)]).astype(np.float32)
    motion = np.stack([np.full((32, 32), u), np.full((32, 32), v)]).astype(np.float32)
    sample = {PAST: torch.from_numpy(frames[:1]), FUTURE: torch.from_numpy(frames[1:]),
              MASK: torch.from_numpy(blob > 0.1), MOTION: torch.from_numpy(motion)}
    out = augment(sample, flip, turns)
    ua, va = out[MOTION][0], out[MOTION][1]
    assert torch.all(ua == ua[0, 0]) and torch.all(va == va[0, 0])
    advected = _shift(out[PAST][0].numpy(), int(ua[0, 0]), int(va[0, 0]))
    np.testing.assert_array_equal(advected, out[FUTURE][0].numpy())
    assert out[MASK].dtype == torch.bool and out[MASK].sum() == (blob > 0.1).sum()
    if (flip, turns) != (False, 0):
        assert not torch.equal(out[PAST], sample[PAST])


def test_rainy_crop_prefers_rain_and_respects_coverage() -> None:
    rng = np.random.default_rng(0)
    wet = np.zeros((100, 100))
    wet[70:90, 10:30] = 1.0
    covered = np.ones((100, 100), bool)
    covered[:, 60:] = False
    picks = [choose_rainy_crop(wet, covered, 32, rng) for _ in range(50)]
    for y0, x0 in picks:
        assert wet[y0:y0 + 32, x0:x0 + 32].mean() >= 0.05
        assert covered[y0:y0 + 32, x0:x0 + 32].mean() >= 0.5
    dry = [choose_rainy_crop(np.zeros((100, 100)), covered, 32, rng) for _ in range(20)]  # fallback
    assert all(covered[y:y + 32, x:x + 32].mean() >= 0.5 for y, x in dry)
    with pytest.raises(ValueError, match="does not fit"):
        choose_rainy_crop(wet, covered, 101, rng)
    assert centre_crop(320, 355, 256) == (32, 49)


def test_items_shapes_units_and_centre_crop(syn_store) -> None:
    ds = xr.open_zarr(syn_store)
    windows = store_windows("s", ds, n_in=4, n_out=6)
    item = RadarWindowDataset({"s": syn_store}, windows, 4, 6, crop_size=32)[3]
    assert item[PAST].shape == (4, 32, 32) and item[FUTURE].shape == (6, 32, 32)
    assert item[PAST].dtype == torch.float32 and item[MASK].shape == (32, 32)
    raw = ds.rain_rate.values[windows[3].start:windows[3].start + 10, 16:48, 16:48]
    np.testing.assert_array_equal(item[FUTURE].numpy(), np.nan_to_num(raw[4:]))
    np.testing.assert_array_equal(item[MASK].numpy(), np.isfinite(raw).all(0))
    assert item["anchor"].item() == windows[3].anchor.astype(np.int64)
    full = RadarWindowDataset({"s": syn_store}, windows, 4, 6)[0]
    assert full[PAST].shape == (4, 64, 64) and not full[MASK].all()


def _wet_fraction(dm: NowcastDataModule, n_batches: int) -> float:
    wet, n = 0.0, 0
    for i, batch in enumerate(dm.train_dataloader()):
        if i == n_batches:
            break
        wet += (batch[FUTURE] >= 0.5).float().sum().item()
        n += batch[FUTURE].numel()
    return wet / n


def test_rain_weighted_sampling_raises_wet_fraction(tmp_path, store_writer) -> None:
    from nowcast.data.synthetic import synthetic_event

    wet = synthetic_event(n_frames=20, height=96, width=96, seed=4)
    dry = wet.copy(deep=True)
    dry["rain_rate"] = dry.rain_rate.where(dry.rain_rate.isnull(), 0.0)
    dry["rain_fraction"] = dry.rain_fraction * 0
    store_writer(wet, tmp_path / "wet.zarr")
    store_writer(dry, tmp_path / "dry.zarr")
    # 4 dry stores for 1 wet one, as with the KNMI evenings: the uniform sampler sees little rain
    stores = {f"dry{i}": "dry.zarr" for i in range(4)} | {"wet": "wet.zarr"}
    cfg = dict(stores=stores, splits={"train": [{"store": s} for s in stores]}, store_root=str(tmp_path),
               n_in=2, n_out=2, crop_size=24, batch_size=8, samples_per_epoch=64, seed=0)
    rainy = NowcastDataModule(**cfg, min_wet_fraction=0.05, dry_weight=0.02)
    uniform = NowcastDataModule(**cfg, prefer_rainy_crops=False, dry_weight=1e6)  # ~equal weights
    rainy.setup()
    uniform.setup()
    w = rainy.train_weights()
    assert w.max() / w.min() > 5
    f_rainy, f_uniform = _wet_fraction(rainy, 8), _wet_fraction(uniform, 8)
    assert f_rainy > 2.5 * f_uniform, (f_rainy, f_uniform)


def test_multi_worker_loading(syn_store, tmp_path) -> None:
    cfg = {"stores": {"syn": str(syn_store)},
           "splits": {"train": [{"store": "syn", "end": "2024-06-01T13:30"}],
                      "val": [{"store": "syn", "start": "2024-06-01T13:35"}]},
           "n_in": 3, "n_out": 3, "crop_size": 32, "eval_crop_size": 48, "batch_size": 4,
           "num_workers": 2, "samples_per_epoch": 8}
    dm = from_config(cfg)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and batches[0][PAST].shape == (4, 3, 32, 32)
    assert not torch.equal(batches[0][PAST], batches[1][PAST])
    val = list(DataLoader(dm.dataset("val"), batch_size=2, num_workers=2))
    serial = [dm.dataset("val")[i] for i in range(len(dm.dataset("val")))]
    got = torch.cat([b[FUTURE] for b in val])
    assert torch.equal(got, torch.stack([s[FUTURE] for s in serial]))


def test_training_split_is_scored_as_the_held_out_splits_are(syn_store) -> None:
    """`nowcast evaluate --split train` and the diagnostics score the training windows on the fixed
    centred window (every model the same pixels), while training keeps its random crops."""
    cfg = {"stores": {"syn": str(syn_store)},
           "splits": {"train": [{"store": "syn", "end": "2024-06-01T13:30"}],
                      "val": [{"store": "syn", "start": "2024-06-01T13:35"}]},
           "n_in": 3, "n_out": 3, "crop_size": 32, "eval_crop_size": 48, "batch_size": 4}
    dm = from_config(cfg)
    dm.setup()
    scored = dm.scoring_dataset("train")
    first, again = scored[0], scored[0]
    assert first[PAST].shape == (3, 48, 48) and torch.equal(first[FUTURE], again[FUTURE])
    assert dm.scoring_dataset("val") is dm.dataset("val")
    training = dm.dataset("train")
    assert training.random_crop and training.crop_size == 32  # the training dataset is untouched


def test_stores_of_different_pixel_sizes_are_refused(tmp_path) -> None:
    """A 1 km store beside a 2 km one (e.g. BOM ingested without its own coarsen) is one clear
    error at setup, naming each pixel size; FMI's 1999.35 m projected pixels pass as 2 km."""
    from nowcast.data.synthetic import write_synthetic_store

    for name, pixel in (("two", 2000.0), ("fmi_like", 1999.35), ("one", 1000.0)):
        write_synthetic_store(tmp_path / f"{name}.zarr", n_frames=8, height=32, width=32, seed=0,
                              pixel_size_m=pixel)

    def module(*names: str) -> NowcastDataModule:
        stores = {n: f"{n}.zarr" for n in names}
        return NowcastDataModule(stores=stores, splits={"train": [{"store": n} for n in names]},
                                 store_root=str(tmp_path), n_in=2, n_out=2, crop_size=16)

    module("two", "fmi_like").setup()
    listed = r"different pixel sizes \(fmi_like 1999 m, one 1000 m, two 2000 m\)"
    with pytest.raises(ValueError, match=listed):
        module("two", "fmi_like", "one").setup()
