#!/usr/bin/env bash
# Build the Blender extension zip of the "Image to Code" add-on with Blender's own builder
# (blender_ext.py from the bpy wheel), then validate the zip.
#
#   scripts/build_addon.sh [OUT_DIR] [--platform P ...] [--no-wheels]
#
# OUT_DIR defaults to dist/. One zip per platform: llm3d_image_to_code-0.1.0-linux_x64.zip
# (platforms: linux-x64 (default), macos-arm64, macos-x64, windows-x64). The wheels of the
# metrics' dependencies are downloaded once per platform into build/addon-wheels/;
# --no-wheels builds a platform-independent zip without them (Score then reports what is
# missing). LLM3D_ADDON_STAGE picks the staging folder (default build/addon/...).
# Install the zip in Blender: Edit > Preferences > Get Extensions > Install from Disk.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

OUT="dist"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then OUT="$1"; shift; fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$(find_python)"

blender_ext() {
  local bpy_dir
  bpy_dir="$("$PY" -c 'import importlib.util as u; print(u.find_spec("bpy").submodule_search_locations[0])')" || {
    echo "the bpy wheel is not installed: run scripts/test.sh or pip install -e '.[blender]'" >&2
    return 1
  }
  echo "$bpy_dir/4.2/scripts/addons_core/bl_pkg/cli/blender_ext.py"
}

EXT="$(blender_ext)"
STAGE="${LLM3D_ADDON_STAGE:-$ROOT/build/addon/llm3d_image_to_code}"
mkdir -p "$OUT"

step "stage addon/ with bpy_lib, worker and wheels" "$PY" scripts/stage_addon.py "$STAGE" "$@"
step "validate the manifest" "$PY" "$EXT" validate "$STAGE"
if grep -q '^wheels = ' "$STAGE/blender_manifest.toml"; then
  step "build one zip per platform" "$PY" "$EXT" build --source-dir "$STAGE" --output-dir "$OUT" --split-platforms
else
  step "build the zip" "$PY" "$EXT" build --source-dir "$STAGE" --output-dir "$OUT"
fi
for zip in "$OUT"/llm3d_image_to_code-*.zip; do
  step "validate $(basename "$zip")" "$PY" "$EXT" validate "$zip"
done
ls -l "$OUT"/llm3d_image_to_code-*.zip
