#!/usr/bin/env bash
# The main job on the embedded default (no Redis, no Docker, no GPU): set up .venv, check
# the machine, then the reward farm demo: ground truths from bpy_lib/examples, `llm3d serve`
# on the inline backend, a batch of exact, perturbed, broken and hostile programs sent
# through RewardClient, a table of statuses and rewards, comparison PNGs in runs/demo/.
# Idempotent; safe to rerun.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "create or reuse .venv (Python 3.11)" ensure_venv
step "install llm3d with Blender, metrics and the reward farm" install_extras "blender,metrics,farm"
step "llm3d doctor" llm3d doctor
step "reward farm demo (llm3d demo)" llm3d demo --out "${DEMO_OUT:-runs/demo}"
printf '\n\033[1;32mquickstart finished.\033[0m Comparison images: %s/. Next: ./scripts/test.sh runs the whole test suite;\n' "${DEMO_OUT:-runs/demo}"
printf 'docker compose up --build --scale worker=2 runs the same service on Celery workers.\n'
