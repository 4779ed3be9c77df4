#!/usr/bin/env bash
# Optional: Infinigen 1.15.5 as a source of realistic indoor objects (llm3d data infinigen).
# It pins bpy 4.2.0 and numpy<2 (its opencv/scikit-image builds break on numpy 2), so it gets
# its own environment, .cache/venv-infinigen (ignored by git), driven by subprocess. A plain `pip install
# infinigen==1.15.5` compiles scikit-image 0.19 from source (~16 minutes); installing it
# with --no-deps plus its requirements with scikit-image>=0.20,<0.25 takes about a minute
# from wheels and gives identical meshes. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
IG_VENV="${LLM3D_INFINIGEN_VENV:-$ROOT/.cache/venv-infinigen}"

create_env() {
  if [ ! -x "$IG_VENV/bin/python" ]; then
    local py
    py="$(find_python)" || return 1
    "$py" -m venv "$IG_VENV" || return 1
  fi
  "$IG_VENV/bin/python" -m pip install --quiet --upgrade pip
}

install_requirements() {
  "$IG_VENV/bin/python" -m pip install --quiet \
    "bpy==4.2.0" "numpy<2" "scikit-image>=0.20,<0.25" "coacd" "gin_config>=0.5.0" \
    "imageio<2.32.0" "matplotlib" "networkx" "opencv-python<4.9.0" "pandas" "psutil" \
    "scikit-learn<1.4.0" "scipy" "shapely<=2.0.5" "tqdm" "trimesh<3.23.0" "OpenEXR" \
    "submitit" "geomdl" "python-fcl" "rtree"
}

install_infinigen() {
  "$IG_VENV/bin/python" -m pip install --quiet --no-deps "infinigen==1.15.5"
}

smoke_test() {
  if [ ! -x "$VENV/bin/llm3d" ]; then
    echo "    llm3d is not installed in $VENV yet: skipping the smoke test"
    return 0
  fi
  LLM3D_DATA__INFINIGEN_PYTHON="$IG_VENV/bin/python" "$VENV/bin/llm3d" data infinigen \
    --factory SimpleDeskFactory --seeds 1 --out "${IG_SMOKE_OUT:-runs/infinigen-smoke}"
}

step "create or reuse $IG_VENV" create_env
step "install Infinigen's requirements (from wheels)" install_requirements
step "install infinigen==1.15.5 (--no-deps)" install_infinigen
step "smoke test: one desk through the sidecar" smoke_test
