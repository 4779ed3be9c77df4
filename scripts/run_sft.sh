#!/usr/bin/env bash
# Supervised fine-tuning (LoRA) with `llm3d sft` (configs/sft.yaml; DESIGN §7).
#
#   ./scripts/run_sft.sh                          # local backend: Qwen2.5-VL-7B on this GPU
#   BACKEND=tinker ./scripts/run_sft.sh           # Tinker (TINKER_API_KEY; a Qwen3-VL model)
#   TINY=1 ./scripts/run_sft.sh                   # CPU smoke run: tiny random model, seconds
#   ./scripts/run_sft.sh --resume latest          # continue the run where it stopped
#
# Extra arguments go to `llm3d sft` (--data, --eval-data, --steps, --run-name,
# --generate-eval ...). Logs, checkpoints and loss.png: runs/<run_name>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/sft.yaml}"
BACKEND="${BACKEND:-}"
EXTRAS="training"
[ "$BACKEND" = "tinker" ] && EXTRAS="training,tinker"
args=(--config "$CONFIG")
[ -n "$BACKEND" ] && args+=(--backend "$BACKEND")
[ -n "${TINY:-}" ] && args+=(--tiny)

step "create or reuse .venv" ensure_venv
step "install llm3d with the $EXTRAS extras (torch pinned first)" install_extras "$EXTRAS"
step "supervised fine-tuning (llm3d sft)" llm3d sft "${args[@]}" "$@"
