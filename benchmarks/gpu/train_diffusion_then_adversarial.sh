#!/usr/bin/env bash
# GPU call 2: the diffusion model alone on the GPU (in-memory loader), then the adversarial
# stage K = 4, 2, 1, then the sampler benchmark on the validation windows.
source "$(dirname "$0")/common.sh"
mkdir -p nowcast/checkpoints
train diff --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml --config configs/train/gpu.yaml --trainer.max_time 00:00:04:15 --trainer.default_root_dir runs/diff
E=runs/diff/lightning_logs/version_0/export
cp $E/diffusion-best.pt $OUT/diffusion.pt; cp $E/diffusion-last.pt /tmp/logs/ 2>/dev/null
python3 -c "
import torch
for s in ('best','last'):
    ck = torch.load('$E/diffusion-'+s+'.pt', weights_only=True); print(s, ck['metrics'], ck['training'])"
grep -E "exported|it/s" /tmp/logs/diff.txt | tail -3
pack
for k in 4 2 1; do
  train adv$k --data configs/data/radar-mix.yaml --config configs/train/adversarial.yaml \
    --model.init_args.model.checkpoint $OUT/diffusion.pt --model.init_args.model.args.steps $k \
    --trainer.max_time 00:00:01:10 --data.num_workers 4 --trainer.default_root_dir runs/adv$k &
done
wait
for k in 4 2 1; do cp runs/adv$k/lightning_logs/version_0/export/diffusion-adversarial-best.pt $OUT/diffusion-adversarial-$k.pt; done
cp $OUT/diffusion.pt nowcast/checkpoints/diffusion.pt
for k in 4 2 1; do cp $OUT/diffusion-adversarial-$k.pt nowcast/checkpoints/; done
pack
timeout 130 python3 benchmarks/bench_samplers.py --store-root .gpu --device cuda --max-windows 16 --ddpm-windows 2 \
  --out $OUT/samplers-gpu.json 2>&1 | grep -v Warn | tail -25
pack
echo "total $(( $(date +%s)-T0 ))s"
