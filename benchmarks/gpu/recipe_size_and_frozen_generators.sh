#!/usr/bin/env bash
# One GPU call, four trainings side by side on the one GPU for the same wall-clock budget:
#   recipe        configs/train/diffusion.yaml + gpu.yaml from scratch (the CPU recipe's network)
#   large         the same network at 6.4 M parameters against 2.66 M (widths x1.5, a third
#                 attention block, dim 144: LARGE below)
#   few           the issued-scoring-rule generator, only z_proj/stem/out trained
#                 (issued-few-parameters.yaml), from the recipe's untrained network
#   blocks        the same, the space-time attention blocks trained too
# Carry `.gpu` (benchmarks/gpu/prepare_gpu_bundle.py) and `outputs/untrained-diffusion.pt`
# (python benchmarks/export_untrained_diffusion.py):
#   bash benchmarks/gpu/recipe_size_and_frozen_generators.sh 00:00:05:30
# Back in $OUT: recipe.pt and large.pt (last EMA weights), few-step<N>.pt / blocks-step<N>.pt (the
# generators at the steps named in KEEP_FEW / KEEP_BLOCKS, and last), logs.tar.gz (at most 8 files come back). Local check of the script on the CPU (tiny
# budgets, no wheels): DRY=1 OUT=/tmp/out bash benchmarks/gpu/recipe_size_and_frozen_generators.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
BUDGET=${1:-00:00:05:30}
KEEP_FEW=${KEEP_FEW:-"250 1000"}
KEEP_BLOCKS=${KEEP_BLOCKS:-"250"}
if [ -n "${DRY:-}" ]; then
  ACC=(--trainer.accelerator cpu --trainer.precision 32-true --trainer.max_steps 4 --trainer.val_check_interval 2
       --trainer.limit_val_batches 1 --data.batch_size 2 --data.stride 20)
  GEN_ACC=("${ACC[@]}"); KEEP_FEW="2 4"; KEEP_BLOCKS="2"; EVERY=2; THREADS=1
  export PYTHONPATH=$PWD/.gpu/site:$PWD  # the device's PYTHONPATH, less the wheels
else
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD  # .gpu/site: pysteps' BPS module (prepare_gpu_bundle.py)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  ACC=(); GEN_ACC=(--trainer.accelerator gpu --data.num_workers 2); EVERY=250
  THREADS=4  # four trainings share 16 cores (precomputing their inputs, feeding the GPU)
fi
mkdir -p /tmp/logs "$OUT"
T0=$(date +%s)
# the adversarial stage's export (it keeps every periodic one under its step) every EVERY steps
python3 - "$EVERY" <<'PY'
import sys, yaml
config = yaml.safe_load(open("configs/train/adversarial.yaml"))
for cb in config["trainer"]["callbacks"]:
    if cb["class_path"].endswith("ExportCheckpoint"):
        cb["init_args"].update(every_n_train_steps=int(sys.argv[1]))
yaml.safe_dump(config, open("/tmp/adversarial-keep.yaml", "w"))
PY
train() {
  local name=$1; shift
  OMP_NUM_THREADS=$THREADS timeout 560 python3 -m nowcast.cli train fit --data configs/data/radar-mix.yaml "$@" --data.store_root .gpu \
    --trainer.max_time "$BUDGET" --trainer.default_root_dir "runs/gpu-$name" > "/tmp/logs/$name.txt" 2>&1
  echo "$name rc=$? t=$(( $(date +%s) - T0 ))s"
}
LARGE=(--model.init_args.model.args.channels '[48, 96, 144, 192]' --model.init_args.model.args.dim 144
       --model.init_args.model.args.depth 3 --model.init_args.model.args.heads 6)
ISSUED=(--config /tmp/adversarial-keep.yaml --config configs/train/scoring-rule.yaml
        --config configs/train/perturbed-scoring-rule.yaml --config configs/train/issued-scoring-rule.yaml
        --config configs/train/issued-few-parameters.yaml
        --model.init_args.model.checkpoint outputs/untrained-diffusion.pt)
train recipe --config configs/train/diffusion.yaml --config configs/train/gpu.yaml --data.num_workers 3 "${ACC[@]}" &
train large --config configs/train/diffusion.yaml --config configs/train/gpu.yaml "${LARGE[@]}" \
  --data.num_workers 3 "${ACC[@]}" &
train few "${ISSUED[@]}" "${GEN_ACC[@]}" &
train blocks "${ISSUED[@]}" --model.init_args.trainable '[z_proj, stem, out_norm, out, blocks]' "${GEN_ACC[@]}" &
wait
for name in recipe large; do
  E=runs/gpu-$name/lightning_logs/version_0/export  # latest: a run stopped by its timeout
  cp $E/diffusion-last.pt "$OUT/$name.pt" 2>/dev/null || cp $E/diffusion-latest.pt "$OUT/$name.pt"
done
for name in few blocks; do
  E=runs/gpu-$name/lightning_logs/version_0/export
  keep=$KEEP_FEW; [ $name = blocks ] && keep=$KEEP_BLOCKS
  for s in $keep; do cp "$E/diffusion-adversarial-step$s.pt" "$OUT/$name-step$s.pt"; done
  cp $E/diffusion-adversarial-last.pt "$OUT/$name-last.pt" 2>/dev/null || cp $E/diffusion-adversarial-latest.pt "$OUT/$name-last.pt"
done
python3 - <<'PY'
import glob, torch
for path in sorted(glob.glob("runs/gpu-*/lightning_logs/version_0/export/*-last.pt")):
    ck = torch.load(path, weights_only=True)
    print(path, ck["metrics"], "step", ck["training"].get("global_step"))
PY
for name in recipe large few blocks; do
  mkdir -p /tmp/logs/metrics-$name
  cp runs/gpu-$name/lightning_logs/version_0/metrics.csv /tmp/logs/metrics-$name/ 2>/dev/null
  grep -E "exported|Error|error" /tmp/logs/$name.txt | tail -3
done
tar czf "$OUT/logs.tar.gz" -C /tmp logs
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 ))s"
