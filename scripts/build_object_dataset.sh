#!/usr/bin/env bash
# Phase 2 of the data pipeline: object programs of every category in
# configs/categories.yaml, run in the sandbox, rendered, written as sft/rl/eval JSONL
# (Qwen2.5-VL chat format), ground-truth meshes, a dataset card and a contact sheet under
# $OUT (resumable: rerun to continue). Small by default (configs/data_small.yaml, about a
# minute); the full size is
#   CONFIG=configs/default.yaml ./scripts/build_object_dataset.sh
# Serve the RL/eval ground truths by task_id: LLM3D_API__DATASETS='["OUT/rl.jsonl"]' llm3d serve
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/data_small.yaml}"
OUT="${OUT:-}"
args=(--config "$CONFIG")
[ -n "$OUT" ] && args+=(--out "$OUT")

step "create or reuse .venv" ensure_venv
step "install llm3d with Blender, metrics and data" install_extras "blender,metrics,data"
step "build the object dataset (llm3d data build)" llm3d data build "${args[@]}" "$@"
