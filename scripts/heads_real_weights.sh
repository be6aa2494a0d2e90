#!/usr/bin/env bash
# Span head or generation, with real weights: the question the tiny from-scratch benchmark
# (benchmarks/bench_heads.py, docs/study.md) cannot answer. Needs a CUDA GPU, the model hub and
# pip install 'gpt2qa[lora]'.
#
#   bash scripts/heads_real_weights.sh TRAIN.json DEV.json OUT_DIR          # run it
#   DRY_RUN=1 bash scripts/heads_real_weights.sh TRAIN.json DEV.json OUT    # print the commands
#
# For gpt2 (full fine-tuning) and Qwen/Qwen2.5-0.5B (LoRA r 16) it trains --head bilstm and
# --head generative with one budget (2 epochs, the configs/ recipes' settings), then scores the
# saved model on DEV three ways: the span head; the generative head constrained to the context
# (its default); and the generative head decoding freely (--no-constrain-to-context). Each
# run's metrics.json holds dev EM/F1, HasAns/NoAns and the tuned threshold; the predict step
# prints its wall time, for the questions/s comparison. Nothing here has run yet: no GPU or hub
# was available where it was written.
set -euo pipefail
train=${1:?TRAIN.json}; dev=${2:?DEV.json}; out=${3:?OUT_DIR}
run() { echo "+ $*"; if [ -z "${DRY_RUN:-}" ]; then "$@"; fi; }

common=(--train-file "$train" --eval-file "$dev" --layout question-first --null-position last
        --max-seq-length 384 --doc-stride 128 --max-query-length 64 --epochs 2
        --warmup-ratio 0.1 --weight-decay 0.01 --precision bf16 --eval-every 2000
        --save-every 1000 --seed 42 --no-progress)
declare -A extra=(
  [gpt2]="--batch-size 32 --lr 5e-5"
  [Qwen/Qwen2.5-0.5B]="--batch-size 16 --grad-accum 2 --lr 2e-4 --lora-r 16 --lora-alpha 32 --lora-dropout 0.05 --merge-lora"
)
for model in gpt2 Qwen/Qwen2.5-0.5B; do
  for head in bilstm generative; do
    dir="$out/${model//\//_}-$head"
    # shellcheck disable=SC2086  # the extra flags split on purpose
    run gpt2qa train --model "$model" --head "$head" "${common[@]}" ${extra[$model]} \
        --output-dir "$dir"
    model_dir="$dir/model"; [ -d "$dir/model-merged" ] && model_dir="$dir/model-merged"
    modes=(default); [ "$head" = generative ] && modes+=(free)
    for mode in "${modes[@]}"; do
      flag=(); [ "$mode" = free ] && flag=(--no-constrain-to-context)
      run bash -c 'start=$(date +%s); gpt2qa predict "$@" && echo "predict seconds: $(( $(date +%s) - start ))"' \
          _ --model "$model_dir" --data "$dev" --out-dir "$dir/pred-$mode" "${flag[@]}"
      run gpt2qa evaluate "$dev" "$dir/pred-$mode/predictions.json" \
          --na-prob-file "$dir/pred-$mode/na_probs.json"
    done
  done
done
