"""Samplers side by side: speed, memory and validation skill of the shipped diffusion model.

For each sampler and step count (DDPM with the full schedule, DDIM-50, DDIM-10,
DPM-Solver++(2M)-10, adversarial 4/2/1) this prints and saves

- seconds per forecast of one window (8 members x 12 frames at 256 x 256) on this device,
  not counting the optical flow (motion comes from the cache; its pysteps cost on the CPU
  is timed separately when pysteps is importable), and peak memory;
- on the validation windows of the radar-mix benchmark: CSI at 1 mm/h (pooled, mean over
  lead times), CRPS (mm/h) and RALSD (dB), with the extrapolation used as conditioning
  (cached LK motion + semi-Lagrangian advection) scored on the same windows for reference;
- the ratios the diffusion issue asks for: the fast sampler (adversarial-4 when its generator is
  there, else DDIM-4) against DDPM with the full schedule and against DDIM-50.

DDPM with the full schedule is slow: ``--ddpm-windows`` scores it on the first N
validation windows only (said in the output), and on a CPU ``--scale-full-schedule`` times
it from the per-step cost of short runs instead of running 1000 steps (said in the output).

    python benchmarks/bench_samplers.py --device cuda --out benchmarks/results/samplers-gpu.json
    python benchmarks/bench_samplers.py --device cpu --no-scores --scale-full-schedule --repeats 1 \
        --out benchmarks/results/samplers-cpu.json     # CPU timings (scores are device-independent)

Peak memory is the CUDA allocator's peak on a GPU and the process's resident memory during
the timed runs on a CPU (the loaded validation windows included).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from nowcast.data.datamodule import from_config
from nowcast.evaluation.provenance import device_name as describe_device
from nowcast.evaluation.suite import ScoreSuite
from nowcast.models import load_forecaster
from nowcast.models.advection import advect
from nowcast.models.diffusion.forecaster import RAW_SAMPLES
from nowcast.types import FUTURE, MASK, MOTION, PAST

# DDPM last: the device is warm by then, so its single timed run needs no warm-up run
SAMPLERS = [("ddim", 50), ("ddim", 10), ("dpmpp_2m", 10), ("ddim", 4),
            ("adversarial", 4), ("adversarial", 2), ("adversarial", 1), ("ddpm", None)]
#: the fast paths whose speed-ups the diffusion issue asks for, the first one present is reported
FAST = ("adversarial-4", "ddim-4")


def label(sampler: str, steps: int) -> str:
    return f"{sampler}-{steps}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakRSS:
    """Peak resident memory (GiB) of this process while the ``with`` block runs, polled from
    /proc every 20 ms (Linux), so each sampler gets its own peak rather than the process's."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def time_forecast(model, batch, members: int, device: torch.device, repeats: int,
                  warm_up: bool = True) -> tuple[float, float]:
    """Median seconds of one forecast of ``batch`` and peak memory (GiB: CUDA allocations on a
    GPU, the process's resident memory during the timed runs on a CPU)."""
    past, motion = batch[PAST][:1].to(device), batch[MOTION][:1].to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    if warm_up and device.type == "cuda":  # kernels and autotuning; a CPU run needs no warm-up
        model.forecast(past, 12, members, gen, motion=motion)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with PeakRSS() as rss:
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model.forecast(past, 12, members, gen, motion=motion)
            sync(device)
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else rss.peak
    return sorted(times)[len(times) // 2], peak


def score(model, batches, members: int, device: torch.device) -> dict[str, float]:
    suite = ScoreSuite(n_lead=12, thresholds=(1.0,), pools=(), fss_thresholds=(), perceptual=False).to(device)
    for i, batch in enumerate(batches):
        gen = torch.Generator(device=device).manual_seed(i)
        rain = model.forecast(batch[PAST].to(device), 12, members, gen, motion=batch[MOTION].to(device))
        suite.update(rain, batch[FUTURE].to(device), batch[MASK].to(device))
    return summarize(suite.compute())


def score_extrapolation(batches, device: torch.device) -> dict[str, float]:
    suite = ScoreSuite(n_lead=12, thresholds=(1.0,), pools=(), fss_thresholds=(), perceptual=False).to(device)
    for batch in batches:
        rain = advect(batch[PAST][:, -1].to(device), batch[MOTION].to(device), 12)
        suite.update(rain[:, None], batch[FUTURE].to(device), batch[MASK].to(device))
    return summarize(suite.compute())


def summarize(result: dict) -> dict[str, float]:
    return {"csi_1": result["csi"]["1.0"]["mean"], "crps": result["crps"]["mean"],
            "ralsd": result["ralsd"]["mean"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="diffusion checkpoint (default: the shipped one)")
    ap.add_argument("--adversarial", default="nowcast/checkpoints/diffusion-adversarial-{k}.pt",
                    help="generator checkpoint per step count k ('{k}' is replaced)")
    ap.add_argument("--data", default="configs/data/radar-mix.yaml")
    ap.add_argument("--store-root", default=None, help="folder the data config's store paths are relative to")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--max-windows", type=int, default=None, help="validation windows scored (default all)")
    ap.add_argument("--ddpm-windows", type=int, default=6, help="windows for DDPM with the full schedule")
    ap.add_argument("--no-scores", action="store_true", help="timings only")
    ap.add_argument("--scale-full-schedule", action="store_true",
                    help="time DDPM-full from the per-step cost of 2- and 12-step runs (for CPUs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-only", action="store_true",
                    help="only score the extrapolation reference (CPU-cheap; no diffusion model)")
    ap.add_argument("--out", default=None, help="JSON path (a PNG is written beside it)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    dm = from_config(args.data, with_motion=True, cached_motion_only=True, num_workers=0, eval_batch_size=1,
                     **({"store_root": args.store_root} if args.store_root else {}))
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    if args.max_windows:
        batches = batches[: args.max_windows]
    print(f"{len(batches)} validation windows, {args.members} members, device {device}")

    if args.reference_only:
        ref = {"all": score_extrapolation(batches, device),
               f"first_{min(16, len(batches))}": score_extrapolation(batches[:16], device)}
        print(json.dumps(ref, indent=1))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"windows": len(batches), "extrapolation": ref}, indent=1))
        return
    base = load_forecaster("diffusion", args.checkpoint, **RAW_SAMPLES)
    n_full = base.diffusion.schedule.n_train_steps
    rows, notes = [], []
    for sampler, steps in SAMPLERS:
        steps = steps or n_full
        kw = {**RAW_SAMPLES, "sampler": sampler, "steps": steps}
        if sampler == "adversarial":
            path = args.adversarial.format(k=steps)
            if not Path(path).exists():
                notes.append(f"{label(sampler, steps)}: no adversarial checkpoint at {path}")
                continue
            kw["sampler_checkpoint"] = path
        model = load_forecaster("diffusion", args.checkpoint, **kw).to(device)
        row = {"sampler": label(sampler, steps)}
        if sampler == "ddpm" and args.scale_full_schedule:
            short = {n: load_forecaster("diffusion", args.checkpoint, **{**RAW_SAMPLES, "sampler": "ddpm",
                                                                         "steps": n}).to(device)
                     for n in (2, 12)}
            t2, _ = time_forecast(short[2], batches[0], args.members, device, args.repeats)
            t12, peak = time_forecast(short[12], batches[0], args.members, device, args.repeats)
            per_step = (t12 - t2) / 10
            row["seconds"] = t2 - 2 * per_step + steps * per_step
            row["peak_gib"] = peak
            notes.append(f"{row['sampler']}: time scaled from 2- and 12-step runs ({per_step:.3f} s/step)")
        else:
            full = sampler == "ddpm"
            row["seconds"], row["peak_gib"] = time_forecast(model, batches[0], args.members, device,
                                                            1 if full else args.repeats, warm_up=not full)
        unscored_ddpm = sampler == "ddpm" and (args.scale_full_schedule or args.ddpm_windows == 0)
        if not args.no_scores and not unscored_ddpm:
            subset = batches[: args.ddpm_windows] if sampler == "ddpm" else batches
            row.update(score(model, subset, args.members, device))
            row["windows"] = len(subset)
        rows.append(row)
        print(row, flush=True)

    ref = {}
    if not args.no_scores:
        ref = {"all": score_extrapolation(batches, device),
               "ddpm_subset": score_extrapolation(batches[: max(args.ddpm_windows, 1)], device)}
    by = {r["sampler"]: r for r in rows}
    ratios = {}
    ddim50, ddpm = by.get("ddim-50"), by.get(label("ddpm", n_full))
    fast = next((by[k] for k in FAST if k in by), None)
    if fast:
        name = fast["sampler"]
        ratios["fast_sampler"] = name
        if ddpm:
            ratios[f"speedup_{name}_vs_ddpm_full"] = ddpm["seconds"] / fast["seconds"]
        if ddim50:
            ratios[f"speedup_{name}_vs_ddim50"] = ddim50["seconds"] / fast["seconds"]
            if "csi_1" in fast and "csi_1" in ddim50:
                ratios[f"csi_change_{name}_vs_ddim50"] = fast["csi_1"] / ddim50["csi_1"] - 1

    motion_seconds = None
    try:  # the optical flow every forecast needs first, on this machine's CPU
        import numpy as np

        from nowcast.data.motion import estimate_motion
        past = batches[0][PAST][0].numpy()
        t0 = time.perf_counter()
        estimate_motion(np.asarray(past))
        motion_seconds = time.perf_counter() - t0
    except ImportError:
        notes.append("pysteps not importable here: optical-flow time not measured")

    device_name = describe_device(device)
    result = {"device": device_name, "threads": torch.get_num_threads(), "members": args.members,
              "frame": [256, 256], "lead_times": 12, "windows": len(batches), "rows": rows,
              "extrapolation_reference": ref, "ratios": ratios, "optical_flow_seconds": motion_seconds,
              "notes": notes, "checkpoint": str(base.checkpoint_path)}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    print(f"{'sampler':<16}{'s/forecast':>11}{'peak GiB':>10}{'CSI@1':>8}{'CRPS':>8}{'RALSD':>8}")
    for r in rows:
        print(f"{r['sampler']:<16}{r['seconds']:>11.3f}{r['peak_gib']:>10.2f}"
              f"{r.get('csi_1', float('nan')):>8.3f}{r.get('crps', float('nan')):>8.3f}"
              f"{r.get('ralsd', float('nan')):>8.2f}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        plot(rows, ref, device_name, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(rows: list[dict], ref: dict, device_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if "csi_1" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if not scored:  # timings only (--no-scores): seconds per sampler
        ax.barh([r["sampler"] for r in rows], [r["seconds"] for r in rows])
        ax.set_xscale("log")
        ax.set_xlabel(f"seconds per forecast (8 members, 12 x 256^2) on {device_name}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return
    for r in scored:
        ax.scatter(r["seconds"], r["csi_1"])
        ax.annotate(r["sampler"], (r["seconds"], r["csi_1"]), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")
    if ref:
        ax.axhline(ref["all"]["csi_1"], ls="--", c="grey", label="extrapolation (same windows)")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds per forecast (8 members, 12 x 256^2) on {device_name}")
    ax.set_ylabel("CSI at 1 mm/h (validation, mean over 5-60 min)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
