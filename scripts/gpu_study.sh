#!/usr/bin/env bash
# One prepared device call: both study configs on one GPU, then CUDA speed (scripts/gpu_session.py).
#   bash scripts/gpu_study.sh OUT_DIR        (run from the repository root, .devdata beside src)
# Each study runs as parallel `gpt2qa study --only ...` workers (tiny models leave the GPU idle
# most of the time, so processes overlap well). A phase past its time limit is stopped; the
# cells that finished are summarised, killed ones are left to resume. Overrides for a CPU dry
# run: CFG_A, CFG_B, T_A, T_SPEED, DEADLINE (study B gets what is left), SPEED_ARGS.
set -u
OUT=${1:?usage: gpu_study.sh OUT_DIR}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=2 TRANSFORMERS_VERBOSITY=error
CFG_A=${CFG_A:-configs/study-synthetic.yaml}
CFG_B=${CFG_B:-configs/study-synthetic-h100.yaml}
T_A=${T_A:-210} T_SPEED=${T_SPEED:-150} DEADLINE=${DEADLINE:-570}
SPEED_ARGS=${SPEED_ARGS:---compile --search-seconds 20 --demo-steps 0}
START=$(date +%s)
stamp() { echo "== $(( $(date +%s) - START )) s: $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

# study DIR CFG SECONDS WORKER_FILTERS... : prepare once, run the workers, summarise.
study() {
  local dir=$1 cfg=$2 secs=$3; shift 3
  python3 -m gpt2qa study --config "$cfg" --out-dir "$dir" --max-cells 0 >/dev/null || return 1
  local pids=() k=0
  for filt in "$@"; do
    k=$((k + 1))
    # shellcheck disable=SC2086
    timeout "$secs" python3 -m gpt2qa study --config "$cfg" --out-dir "$dir" $filt \
      >"$dir/worker$k.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 -m gpt2qa study --config "$cfg" --out-dir "$dir" --max-cells 0 | tail -n 40
  tar -czf "$OUT/$(basename "$dir").tgz" -C "$(dirname "$dir")" \
    --exclude='checkpoint-*' --exclude='model' --exclude='data' --exclude='init-seed*' \
    --exclude='tokenizer' --exclude='nbest*.json' "$(basename "$dir")"
}

stamp "study A: $CFG_A"
study runs/gpu-study-easy "$CFG_A" "$T_A" \
  "--only layout=question-first --only null=first" "--only layout=question-first --only null=last" \
  "--only layout=question-first --only null=classifier" "--only layout=context-first --only null=first" \
  "--only layout=context-first --only null=last" "--only layout=context-first --only null=classifier"
stamp "speed"
# shellcheck disable=SC2086
timeout "$T_SPEED" python3 scripts/gpu_session.py --data-dir .devdata --out "$OUT" $SPEED_ARGS \
  2>&1 | grep -v Warning | tail -n 30
T_B=$(( DEADLINE - ($(date +%s) - START) - 30 ))  # what is left, less the summary
stamp "study B: $CFG_B, $T_B s"
study runs/gpu-study-h100 "$CFG_B" "$T_B" \
  "--only null=first --only head=linear" "--only null=first --only head=bilstm" \
  "--only null=last --only head=linear" "--only null=last --only head=bilstm" \
  "--only null=classifier --only head=linear" "--only null=classifier --only head=bilstm"
stamp "done"
