#!/usr/bin/env bash
# One GPU call: two diffusion variants + the three learned baselines concurrently, then the
# adversarial stage (K = 4, 2, 1) on the better variant. Results and logs go to $OUT. (The first
# GPU call, with the patch-Transformer recipe; configs/train/diffusion.yaml is the CPU recipe.)
source "$(dirname "$0")/common.sh"
python3 -c "import torch, lightning, zarr; print('torch', torch.__version__, 'lightning', lightning.__version__, 'zarr', zarr.__version__)"
D="--data configs/data/radar-mix.yaml --config configs/train/diffusion-transformer.yaml --trainer.max_time 00:00:04:30"
train diff_res $D --trainer.default_root_dir runs/diff_res & P1=$!
train diff_dir $D --model.init_args.model.args.residual false --trainer.default_root_dir runs/diff_dir & P2=$!
( for m in simvp convlstm cgan; do
    train $m --config configs/train/baselines.yaml --config configs/train/$m.yaml --trainer.max_time 00:00:01:30 \
      --data.num_workers 3 --trainer.default_root_dir runs/$m
    cp runs/$m/lightning_logs/version_0/export/model-best.pt $OUT/$m.pt 2>/dev/null
  done ) & P3=$!
wait $P1 $P2
WIN=$(python3 - <<'PY'
import torch
best = {}
for v in ("res", "dir"):
    try:
        ck = torch.load(f"runs/diff_{v}/lightning_logs/version_0/export/diffusion-best.pt", weights_only=True)
        best[v] = ck["metrics"].get("val/csi_1", -1)
        print(f"variant {v}: {ck['metrics']} step {ck['training']['global_step']}", file=__import__('sys').stderr)
    except Exception as e:
        print(f"variant {v}: {e}", file=__import__('sys').stderr)
print(max(best, key=best.get))
PY
)
echo "winner: $WIN"
cp runs/diff_$WIN/lightning_logs/version_0/export/diffusion-best.pt $OUT/diffusion.pt
for v in res dir; do metrics $v runs/diff_$v; done
pack
for k in 4 2 1; do
  train adv$k --data configs/data/radar-mix.yaml --config configs/train/adversarial.yaml \
    --model.init_args.model.checkpoint $OUT/diffusion.pt --model.init_args.model.args.steps $k \
    --trainer.max_time 00:00:01:45 --data.num_workers 4 --trainer.default_root_dir runs/adv$k &
done
wait
for k in 4 2 1; do cp runs/adv$k/lightning_logs/version_0/export/diffusion-adversarial-best.pt $OUT/diffusion-adversarial-$k.pt; done
for m in simvp convlstm cgan adv4 adv2 adv1; do metrics $m runs/$m; done
pack
ls -la $OUT
echo "total $(( $(date +%s)-T0 ))s"
