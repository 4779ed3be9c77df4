#!/usr/bin/env bash
# The evaluation runner on both baselines (oracle, retrieval) — or any POLICIES — over an
# eval split, scored by the reward service at 100 000 points (configs/eval.yaml).
#
#   ./scripts/run_eval.sh                         # the bpy_lib-examples dataset (built here)
#   DATA=data/small/objects ./scripts/run_eval.sh # the splits of `llm3d data build`
#   SPLIT=eval_unseen DATA=data/small/objects ./scripts/run_eval.sh  # held-out categories
#   POLICIES="openai" ./scripts/run_eval.sh --base-url http://127.0.0.1:8001/v1 --model M
#
# DATA holds eval.jsonl and sft.jsonl (what retrieval retrieves from). Without DATA the
# small dataset of training/eval_examples.py (10 eval objects, 22 training objects) is built
# under data/eval_examples. A reward service already answering at REWARD_URL is used;
# otherwise one is started here (`llm3d serve`, inline backend) and stopped at the end.
# Reports: runs/eval/<policy>/{report.md,report.json,*.png}; reruns reuse the caches there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/eval.yaml}"
DATA="${DATA:-data/eval_examples}"
SPLIT="${SPLIT:-eval}"
POLICIES="${POLICIES:-oracle retrieval}"
OUT="${OUT:-runs/eval}"
PORT="${PORT:-8765}"
REWARD_URL="${REWARD_URL:-http://127.0.0.1:$PORT}"

trap stop_reward_service EXIT

build_examples() {
  python -m training.eval_examples "$DATA"
}

start_server() { start_reward_service "$OUT"; }

evaluate() {
  local policy="$1"; shift
  llm3d eval --config "$CONFIG" --policy "$policy" \
    --split "$DATA/$SPLIT.jsonl" --train-split "$DATA/sft.jsonl" \
    --reward-url "$REWARD_URL" --out "$OUT/$policy" "$@"
  cat "$OUT/$policy/report.md"
}

step "create or reuse .venv" ensure_venv
step "install llm3d with Blender, metrics, the farm and the eval extras" \
  install_extras "blender,metrics,farm,env,eval"
if [ ! -f "$DATA/$SPLIT.jsonl" ]; then
  if [ "$DATA" = "data/eval_examples" ]; then
    step "build the bpy_lib-examples dataset ($DATA)" build_examples
  else
    echo "$DATA/$SPLIT.jsonl does not exist: build it with scripts/build_object_dataset.sh" >&2
    exit 2
  fi
fi
step "start or reuse the reward service" start_server
for policy in $POLICIES; do
  step "evaluate $policy" evaluate "$policy" "$@"
done
