#!/usr/bin/env bash
# Create or update .venv with every extra the suite tests (torch==2.13.0 is installed first,
# see scripts/lib.sh), the verifiers environment package and the Infinigen sidecar, then lint,
# type-check, check the import contracts and run the whole pytest suite. Extra arguments go to pytest
# (./scripts/test.sh -k config -x). SKIP_INFINIGEN=1 skips the sidecar (its test then skips).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "create or reuse .venv (Python 3.11)" ensure_venv
step "install llm3d with the test extras" \
  install_extras "blender,metrics,farm,data,training,tinker,modal,env,eval,dev"
step "install the verifiers environment (environments/blender_3d)" \
  python -m pip install --quiet --no-deps -e environments/blender_3d
if [ "${SKIP_INFINIGEN:-0}" != 1 ]; then
  step "Infinigen sidecar (.cache/venv-infinigen)" ./scripts/setup_infinigen.sh
fi
step "ruff lint" ruff check .
step "ruff format check" ruff format --check .
step "mypy" mypy
step "import-linter (DESIGN §1 layers, no circles)" lint-imports --no-cache
step "pytest" python -m pytest "$@"
