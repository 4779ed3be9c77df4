#!/usr/bin/env bash
# Phase 1 of the data pipeline: single-part bpy_lib programs of every family, run in the
# sandbox, filtered and written as JSONL + npz shards under $OUT (resumable: rerun to
# continue). Small by default (configs/data_small.yaml, ~1 minute); the full 300K run is
#   CONFIG=configs/default.yaml ./scripts/generate_parts.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/data_small.yaml}"
OUT="${OUT:-}"
args=(--config "$CONFIG")
[ -n "$OUT" ] && args+=(--out "$OUT")
[ -n "${N:-}" ] && args+=(--n "$N")

step "create or reuse .venv" ensure_venv
step "install llm3d with Blender, metrics and data" install_extras "blender,metrics,data"
step "generate part programs (llm3d data parts)" llm3d data parts "${args[@]}" "$@"
