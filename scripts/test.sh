#!/usr/bin/env bash
# Create or update .venv with the test extras, then lint, type-check and run the whole
# pytest suite. Extra arguments go to pytest (./scripts/test.sh -k config -x).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "create or reuse .venv (Python 3.11)" ensure_venv
step "install llm3d with the test extras" install_extras "blender,metrics,farm,dev"
step "ruff lint" ruff check .
step "ruff format check" ruff format --check .
step "mypy" mypy
step "pytest" python -m pytest "$@"
