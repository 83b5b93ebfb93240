#!/usr/bin/env bash
# One GPU call that continues every shipped learned model from its checkpoint (init_from) for
# the same wall-clock budget, all four concurrently on the one GPU, so no baseline is starved
# against the diffusion model:  bash benchmarks/gpu/continue_all.sh 00:00:08:30
# Carry `.gpu` (benchmarks/gpu/prepare_gpu_bundle.py). Tree + carry must stay under 64 MiB:
# move reports/ and the diffusion-adversarial-*.pt files out of the checkout for the call.
# The continued exports (best val/csi_1) come back as $OUT/<model>.pt; copy them over
# nowcast/checkpoints/ only where they score better, then retrain the adversarial stage on
# the new diffusion.pt (train_diffusion_then_adversarial.sh, its second half).
source "$(dirname "$0")/common.sh"
BUDGET=${1:-00:00:08:30}
train diffusion --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml \
  --model.init_args.init_from nowcast/checkpoints/diffusion.pt --trainer.max_time "$BUDGET" \
  --data.num_workers 4 --trainer.default_root_dir runs/diffusion &
for m in convlstm simvp cgan; do
  train $m --config configs/train/baselines.yaml --config configs/train/$m.yaml \
    --model.init_args.init_from nowcast/checkpoints/$m.pt --trainer.max_time "$BUDGET" \
    --data.num_workers 3 --trainer.default_root_dir runs/$m &
done
wait
for m in diffusion convlstm simvp cgan; do
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
