"""Cost of scoring one evaluation window: the full score suite on an 8-member, 12-frame, 256x256
forecast, without and with the perceptual scores (LPIPS, FID), on this machine's CPU.

    .venv/bin/python benchmarks/bench_scores.py [--threads 2] [--repeats 5]
                                                [--out benchmarks/results/scores.json]

Random rain-like fields (30 % wet, 0-5 mm/h) on a 256 px window with an uncovered strip; each
score's own update is timed too, so the table says where the time goes. Perceptual scores need
the offline weights (../shared/weights); without them that row is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nowcast.evaluation.inputs import reduce_ensemble
from nowcast.evaluation.perceptual import perceptual_weights_missing
from nowcast.evaluation.suite import ScoreSuite

B, M, T, H, W = 1, 8, 12, 256, 256


def fields(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(B, T, H, W, generator=g) * 5 * (torch.rand(B, T, H, W, generator=g) > 0.7)
    ens = torch.rand(B, M, T, H, W, generator=g) * 5 * (torch.rand(B, M, T, H, W, generator=g) > 0.7)
    mask = torch.ones(B, H, W, dtype=torch.bool)
    mask[:, :20] = False
    return ens, target, mask


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy imports)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/scores.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ens, target, mask = fields()
    suite = ScoreSuite(T, perceptual=False)
    point, sample = reduce_ensemble(ens, "mean"), reduce_ensemble(ens, "member0")
    parts = {
        "categorical (CSI/POD/FAR/bias)": lambda: suite.categorical.update(point, target, mask),
        "pooled CSI (4, 16 px)": lambda: [p.update(point, target, mask) for p in suite.pooled],
        "MSE (mm/h, pixel), PSNR": lambda: [m.update(point, target, mask)
                                            for m in (suite.mse_mm_h, suite.mse_pixel, suite.psnr)],
        "SSIM": lambda: suite.ssim.update(point, target, mask),
        "FSS": lambda: suite.fss.update(point, target, mask),
        "CRPS": lambda: suite.crps.update(ens, target, mask),
        "spectra (RAPSD)": lambda: suite.rapsd.update(sample, target, mask),
    }
    rows = {name: round(seconds(fn, args.repeats), 4) for name, fn in parts.items()}
    total = round(seconds(lambda: suite.update(ens, target, mask), args.repeats), 4)
    for name, s in rows.items():
        print(f"  {name:32s} {s:7.3f} s")
    print(f"score suite without LPIPS/FID: {total:.3f} s per window ({M} members, {T} frames, {H}x{W})")
    out = {"machine": f"{platform.machine()}, torch threads {args.threads}", "window": [M, T, H, W],
           "parts_s": rows, "total_without_perceptual_s": total}
    missing = perceptual_weights_missing(None)
    if missing:
        print(f"with LPIPS/FID: skipped ({'; '.join(missing)})")
        out["total_with_perceptual_s"] = None
    else:
        full = ScoreSuite(T, perceptual=True)
        with_p = round(seconds(lambda: full.update(ens, target, mask), max(1, args.repeats // 2)), 4)
        print(f"score suite with LPIPS/FID: {with_p:.3f} s per window")
        out["total_with_perceptual_s"] = with_p
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
