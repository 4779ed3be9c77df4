#!/usr/bin/env bash
# The main job on the embedded default (no Redis, no Docker, no GPU): set up .venv, check
# the machine, and run what llm3d can do so far. Idempotent; safe to rerun.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "create or reuse .venv (Python 3.11)" ensure_venv
step "install llm3d with Blender, metrics and the reward farm" install_extras "blender,metrics,farm"
step "llm3d doctor" llm3d doctor
printf '\n\033[1;32mquickstart finished.\033[0m Next: ./scripts/test.sh runs the whole test suite.\n'
