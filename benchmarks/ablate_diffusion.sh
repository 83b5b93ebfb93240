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
# Each run writes runs/ablation/<row>/ (log: runs/ablation/<row>.log); its exported weights are
# copied to outputs/ablation/<row>.pt, which the evaluation config names.
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
)

mkdir -p runs/ablation outputs/ablation
for row in "${rows[@]}"; do
  [ -v "overrides[$row]" ] || { echo "unknown row $row (known: ${!overrides[*]})" >&2; exit 2; }
  rm -rf "runs/ablation/$row"
  echo "$(date -u +%FT%TZ) training $row for $budget" | tee -a runs/ablation/summary.log
  # shellcheck disable=SC2086  # the overrides are separate words on purpose
  nowcast train fit --data configs/data/radar-mix.yaml --config configs/train/diffusion.yaml \
    --trainer.max_time "$budget" --trainer.val_check_interval 1000000 --trainer.num_sanity_val_steps 0 \
    --trainer.default_root_dir "runs/ablation/$row" ${overrides[$row]} \
    > "runs/ablation/$row.log" 2>&1
  last=$(find "runs/ablation/$row" -name diffusion-last.pt | head -1)
  cp "$last" "outputs/ablation/$row.pt"
  steps=$(grep -o "exported .*diffusion-last.pt (step [0-9]*)" "runs/ablation/$row.log" | grep -o "[0-9]*)$" | tr -d ')')
  echo "$(date -u +%FT%TZ) $row: ${steps:-?} steps -> outputs/ablation/$row.pt" | tee -a runs/ablation/summary.log
done
