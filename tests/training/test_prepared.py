"""Precomputed training windows (nowcast.training.prepared): the full-resolution fields that the
"issued" scoring rule needs are the same crop as the diffusion grid's, turned and flipped with it;
with time reversal, a window is served as it is or played backwards."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nowcast.models.diffusion.hybrid import SpaceTimeUNet
from nowcast.models.diffusion.wrapper import COND, RESIDUAL, ConditionalDiffusion
from nowcast.training.prepared import EXTRAPOLATION, FULL_MASK, PreparedResiduals
from nowcast.types import FUTURE, MASK, MOTION, PAST

N_IN, N_OUT, SIZE, COARSEN, CROP = 2, 3, 32, 4, 16


class Windows:
    """Two full-field windows of random rain, a stripe of missing data and a uniform motion."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.windows = [0, 1]
        self.items = []
        for _ in self.windows:
            mask = torch.ones(SIZE, SIZE, dtype=torch.bool)
            mask[:, :3] = False
            self.items.append({PAST: torch.rand(N_IN, SIZE, SIZE, generator=g) ** 3 * 20,
                               FUTURE: torch.rand(N_OUT, SIZE, SIZE, generator=g) ** 3 * 20,
                               MASK: mask, MOTION: torch.full((2, SIZE, SIZE), 1.5)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def test_full_resolution_fields_are_the_same_crop_turned_alike() -> None:
    net = SpaceTimeUNet(n_in=N_IN, n_out=N_OUT, channels=[8, 16], dim=16, depth=1, heads=2)
    diffusion = ConditionalDiffusion(net, prediction_type="x0", transform="log", coarsen=COARSEN,
                                     residual_scale=0.1)
    plain = PreparedResiduals(Windows(), diffusion, CROP, augment=True, prefer_rain=False)
    prepared = PreparedResiduals(Windows(), diffusion, CROP, augment=True, prefer_rain=False,
                                 full_resolution=True)
    assert EXTRAPOLATION not in plain[0]
    torch.manual_seed(0)
    for _ in range(12):  # random crops, flips and quarter turns
        item = prepared[int(torch.randint(0, 2, ()).item())]
        c = CROP // COARSEN
        assert item[RESIDUAL].shape == (N_OUT, c, c) and item[EXTRAPOLATION].shape == (N_OUT, CROP, CROP)
        assert item[FUTURE].shape == (N_OUT, CROP, CROP) and item[FULL_MASK].dtype == torch.bool
        # the coarse residual is the block mean of the full-resolution future minus extrapolation ...
        full_residual = F.avg_pool2d(diffusion.to_model(item[FUTURE]) - item[EXTRAPOLATION], COARSEN)
        assert torch.allclose(full_residual, item[RESIDUAL], atol=2e-3)
        # ... the coarse coverage that of the full-resolution blocks, and the extrapolation's block
        # means the conditioning's extrapolation frames
        assert torch.equal(F.avg_pool2d(item[FULL_MASK][None].float(), COARSEN)[0] > 0.999, item[MASK])
        assert torch.allclose(F.avg_pool2d(item[EXTRAPOLATION], COARSEN), item[COND][N_IN:], atol=2e-3)


def test_time_reversal_serves_the_window_or_the_same_played_backwards() -> None:
    net = SpaceTimeUNet(n_in=N_IN, n_out=N_OUT, channels=[8, 16], dim=16, depth=1, heads=2)
    diffusion = ConditionalDiffusion(net, prediction_type="x0", transform="log", coarsen=COARSEN,
                                     residual_scale=0.1)
    windows = Windows()
    prepared = PreparedResiduals(windows, diffusion, SIZE, augment=False, prefer_rain=False,
                                 full_resolution=True, time_reversal=True)
    frames = torch.cat([windows[0][PAST], windows[0][FUTURE]])
    ways = {"forward": frames[N_IN:], "backward": frames.flip(0)[N_IN:]}
    seen = set()
    torch.manual_seed(0)
    for _ in range(16):
        item = prepared[0]
        way = [name for name, future in ways.items() if torch.allclose(item[FUTURE], future, atol=0.02)]
        assert len(way) == 1, "neither the window nor the window played backwards"
        seen.add(way[0])
        # either way the residual is that of the future it is served with
        full_residual = F.avg_pool2d(diffusion.to_model(item[FUTURE]) - item[EXTRAPOLATION], COARSEN)
        assert torch.allclose(full_residual, item[RESIDUAL], atol=2e-3)
    assert seen == {"forward", "backward"}


def test_a_field_smaller_than_the_crop_is_served_inside_uncovered_pixels() -> None:
    """BOM's 128 px grid in the recipe's 256 px crops: the crop holds the whole field, every pixel
    beyond it uncovered (left out of the loss) and dry, and the field's own inputs unchanged."""
    net = SpaceTimeUNet(n_in=N_IN, n_out=N_OUT, channels=[8, 16], dim=16, depth=1, heads=2)
    diffusion = ConditionalDiffusion(net, prediction_type="x0", transform="log", coarsen=COARSEN,
                                     residual_scale=0.1)
    windows = Windows()
    fitting = PreparedResiduals(windows, diffusion, SIZE, augment=False, prefer_rain=False,
                                full_resolution=True)
    big = SIZE + 16
    padded = PreparedResiduals(windows, diffusion, big, augment=True, prefer_rain=True,
                               full_resolution=True)
    c, n = big // COARSEN, SIZE // COARSEN
    torch.manual_seed(0)
    corners = set()
    for _ in range(12):
        item = padded[0]
        assert item[RESIDUAL].shape == (N_OUT, c, c) and item[FUTURE].shape == (N_OUT, big, big)
        covered = item[MASK]
        assert covered.sum() == fitting[0][MASK].sum()  # the field's own coverage, nothing more
        rows, cols = torch.nonzero(covered.any(1)).flatten(), torch.nonzero(covered.any(0)).flatten()
        corners.add((int(rows.min()) < c - n, int(cols.min()) < c - n))  # where flips/turns put it
        assert item[FUTURE].count_nonzero() == fitting[0][FUTURE].count_nonzero()  # the padding is dry
    assert len(corners) > 1
    plain = fitting[0]  # augment=False, crop = field: the window itself, unpadded
    first = PreparedResiduals(windows, diffusion, big, augment=False, prefer_rain=False,
                              full_resolution=True)[0]
    assert torch.allclose(first[RESIDUAL][:, :n, :n], plain[RESIDUAL], atol=1e-3)  # float16 storage
    assert torch.allclose(first[COND][:, :n, :n], plain[COND], atol=1e-3) and not first[MASK][n:].any()
