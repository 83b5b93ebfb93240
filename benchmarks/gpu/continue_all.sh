#!/usr/bin/env bash
# One GPU call that continues shipped learned models from their checkpoints (init_from) for
# the same wall-clock budget, concurrently on the one GPU, so no baseline is starved against
# the diffusion model:  bash benchmarks/gpu/continue_all.sh 00:00:08:30 [MODEL ...]
# (MODEL: diffusion convlstm simvp cgan; default all four). Carry `.gpu`
# (benchmarks/gpu/prepare_gpu_bundle.py, ~37 MB). Tree + carry must stay under 64 MiB and the
# four float16 checkpoints are ~37 MB, so run it as two calls of two models each, e.g.
# `... diffusion cgan` then `... convlstm simvp`, with reports/ and every checkpoint the call
# does not continue moved out of the checkout. The continued exports (best val/csi_1) come
# back as $OUT/<model>.pt; copy them over nowcast/checkpoints/ only where they score better
# (nowcast evaluate --split val), then retrain the adversarial stage on a new diffusion.pt
# (the second half of train_diffusion_then_adversarial.sh).
source "$(dirname "$0")/common.sh"
BUDGET=${1:-00:00:08:30}; shift || true
MODELS=${*:-diffusion convlstm simvp cgan}
for m in $MODELS; do
  if [ "$m" = diffusion ]; then
    train diffusion --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml \
      --config configs/train/gpu.yaml --model.init_args.model.checkpoint nowcast/checkpoints/diffusion.pt --trainer.max_time "$BUDGET" \
      --data.num_workers 4 --trainer.default_root_dir runs/diffusion &
  else
    # the shipped cGAN holds no discriminators: train fresh ones alone first (d_warmup)
    extra=(); [ "$m" = cgan ] && extra=(--model.init_args.d_warmup 200)
    train $m --config configs/train/baselines.yaml --config configs/train/$m.yaml \
      --model.init_args.model.checkpoint nowcast/checkpoints/$m.pt --trainer.max_time "$BUDGET" \
      --data.num_workers 3 --trainer.default_root_dir runs/$m "${extra[@]}" &
  fi
done
wait
for m in $MODELS; do
  E=runs/$m/lightning_logs/version_0/export
  cp "$(ls $E/*-best.pt | head -1)" "$OUT/$m.pt" 2>/dev/null
  metrics $m runs/$m
done
python3 - <<'PY'
import glob, torch
for path in sorted(glob.glob("runs/*/lightning_logs/version_0/export/*-best.pt")):
    ck = torch.load(path, weights_only=True)
    print(path, ck["metrics"], "step", ck["training"].get("global_step"))
PY
pack
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 ))s"
