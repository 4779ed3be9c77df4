#!/usr/bin/env bash
# The whole data pipeline, each stage resumable (rerun to continue where it stopped):
#   1. generated single parts               llm3d data parts      -> $DATA/parts
#   2. Infinigen indoor assets, in parts    llm3d data infinigen  -> $DATA/infinigen
#   3. fit each part, assemble each asset, keep it when it matches the asset's mesh
#                                           llm3d data assemble --infinigen
#   4. one build over templates, Infinigen objects, single parts and compositions: run,
#      render, honest splits (sft/rl/eval/eval_unseen JSONL), dataset card, contact sheet
#                                           llm3d data build      -> $DATA/objects
# Small by default (configs/data_small.yaml, under 10 minutes on 2 cores); the full size is
#   CONFIG=configs/default.yaml ./scripts/build_object_dataset.sh
# When the sources include infinigen and no sidecar is configured (data.infinigen_python), the
# Infinigen sidecar is set up first (scripts/setup_infinigen.sh, about a minute and a half);
# SKIP_INFINIGEN=1 builds without it: stages 2-3 are then skipped with a note and the build
# takes the other sources. Extra arguments go to `llm3d data build`.
# Serve the RL/eval ground truths by task_id: LLM3D_API__DATASETS='["OUT/rl.jsonl"]' llm3d serve
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/data_small.yaml}"
DATA=""
SOURCES=""
SIDECAR=""

read_config() {
  local line rest
  line="$(python -c 'import sys; from llm3d.config import load_config
d = load_config(sys.argv[1]).data
print(d.out_dir, ",".join(d.sources), d.infinigen_python or "-")' "$CONFIG")" || return 1
  DATA="${line%% *}"
  rest="${line#* }"
  SOURCES="${rest%% *}"
  SIDECAR="${rest#* }"
  echo "    data: $DATA; sources: $SOURCES"
}

# The sidecar where the build needs one and nobody chose another: a clean clone builds all
# four sources.
sidecar() {
  if [ "${SKIP_INFINIGEN:-0}" = 1 ]; then
    echo "SKIP_INFINIGEN=1: building without Infinigen"
  elif [[ ",$SOURCES," != *",infinigen,"* ]]; then
    echo "the sources do not include infinigen"
  elif [ "$SIDECAR" != "-" ]; then
    echo "data.infinigen_python is set ($SIDECAR): using it as it is"
  else
    ./scripts/setup_infinigen.sh
  fi
}

infinigen() {
  llm3d data infinigen --config "$CONFIG" --out "$DATA/infinigen"
}
assemble() {
  if [ -f "$DATA/infinigen/parts.jsonl" ]; then
    llm3d data assemble --config "$CONFIG" --infinigen "$DATA/infinigen"
  else
    echo "no Infinigen parts in $DATA/infinigen (sidecar not installed?): the build skips them"
  fi
}
build() {
  local sources="$SOURCES"
  if [ ! -f "$DATA/infinigen/objects.jsonl" ]; then
    sources="$(echo "$sources" | tr ',' '\n' | grep -vx infinigen | paste -sd, -)"
  fi
  llm3d data build --config "$CONFIG" --sources "$sources" \
    --infinigen-dir "$DATA/infinigen" --parts-dir "$DATA/parts" --out "$DATA/objects" "$@"
}

step "create or reuse .venv" ensure_venv
step "install llm3d with Blender, metrics and data" install_extras "blender,metrics,data"
step "read $CONFIG" read_config
step "generate single parts (llm3d data parts)" llm3d data parts --config "$CONFIG" --out "$DATA/parts"
step "Infinigen sidecar (scripts/setup_infinigen.sh; SKIP_INFINIGEN=1 to build without)" sidecar
step "spawn Infinigen assets (llm3d data infinigen)" infinigen
step "fit and assemble Infinigen objects (llm3d data assemble --infinigen)" assemble
step "build the object dataset (llm3d data build)" build "$@"
