#!/usr/bin/env bash
# The diffusion recipe's ablation (model card: nowcast/checkpoints/README.md, "Ablation"): each row
# is configs/train/diffusion.yaml trained from scratch with the SAME wall-clock budget on the same
# machine, one run at a time (nothing else may run: a shared CPU slows a step tenfold), with one
# part of the recipe taken out; then every row is scored on the validation split by
#   nowcast evaluate --config configs/evaluate/radar-mix-val-ablation.yaml
#
#   bash benchmarks/ablate_diffusion.sh [budget dd:hh:mm:ss, default 00:00:15:00] [rows...]
# Rows: recipe, unscaled (residual_scale 1: the residual in model-space units), full-res (coarsen 1:
# the residual diffused on the 2 km grid, the token grid 4x finer), transformer (a pure
# patch-8 transformer on the same 8 km grid and token grid, about the hybrid's parameter count).
# Variants of the recipe (configs/evaluate/radar-mix-val-variants.yaml, 25-minute budget):
# v-prediction (the network predicts v instead of x0), folded (the 2 km residual, each 4x4 block of
# pixels folded into channels so the network runs on the 8 km grid: full-resolution detail at
# about twice the recipe's step cost; residual_scale = its std, benchmarks/residual_scale.py).
# Each run writes runs/<set>/<row>/ (log: runs/<set>/<row>.log); its exported weights are copied
# to outputs/<set>/<row>.pt, which the evaluation config names; <set> is $ABLATION_SET, default
# "ablation" (the variants: ABLATION_SET=variants).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-00:00:15:00}
shift || true
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(recipe unscaled full-res transformer)

declare -A overrides=(
  [recipe]=""
  [unscaled]="--model.init_args.model.args.residual_scale 1.0"
  [full-res]="--model.init_args.model.args.coarsen 1"
  [transformer]="--model.init_args.model.args.architecture transformer --model.init_args.model.args.dim 144 --model.init_args.model.args.depth 6 --model.init_args.model.args.heads 4"
  [v-prediction]="--model.init_args.model.args.prediction_type v"
  [folded]="--model.init_args.model.args.coarsen 1 --model.init_args.model.args.fold 4 --model.init_args.model.args.residual_scale 0.05"
)
set_name=${ABLATION_SET:-ablation}

mkdir -p "runs/$set_name" "outputs/$set_name"
for row in "${rows[@]}"; do
  [ -v "overrides[$row]" ] || { echo "unknown row $row (known: ${!overrides[*]})" >&2; exit 2; }
  rm -rf "runs/$set_name/$row"
  echo "$(date -u +%FT%TZ) training $row for $budget" | tee -a "runs/$set_name/summary.log"
  # shellcheck disable=SC2086  # the overrides are separate words on purpose
  nowcast train fit --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml \
    --trainer.max_time "$budget" --trainer.val_check_interval 1000000 --trainer.num_sanity_val_steps 0 \
    --trainer.default_root_dir "runs/$set_name/$row" ${overrides[$row]} \
    > "runs/$set_name/$row.log" 2>&1
  last=$(find "runs/$set_name/$row" -name diffusion-last.pt | head -1)
  cp "$last" "outputs/$set_name/$row.pt"
  steps=$(grep -o "exported .*diffusion-last.pt (step [0-9]*)" "runs/$set_name/$row.log" | grep -o "[0-9]*)$" | tr -d ')')
  echo "$(date -u +%FT%TZ) $row: ${steps:-?} steps -> outputs/$set_name/$row.pt" | tee -a "runs/$set_name/summary.log"
done
