#!/usr/bin/env bash
# Shared helpers of the scripts/ entry points: each step says what it does and, when it
# fails, the step's name and how to rerun it. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLM3D_VENV:-$ROOT/.venv}"
# torch is installed pinned before the training extra: here 2.13.0 is a CPU build from local
# disk, and an unpinned torch pulls a multi-GB CUDA build. Never install torchvision.
TORCH_PIN="torch==2.13.0"

step() {
  local name="$1"; shift
  printf '\n\033[1;34m==> %s\033[0m\n' "$name"
  local start=$SECONDS
  if ! "$@"; then
    printf '\n\033[1;31mFAILED at step "%s"\033[0m (command: %s)\n' "$name" "$*" >&2
    exit 1
  fi
  printf '\033[2m    (%s: %ss)\033[0m\n' "$name" "$((SECONDS - start))"
}

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "llm3d needs Python 3.11 (Blender 4.2's bpy wheel is 3.11-only); set PYTHON=/path/to/python3.11" >&2
  return 1
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    local py
    py="$(find_python)" || return 1
    "$py" -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install --quiet --upgrade pip || return 1
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
}

# install_extras EXTRAS: pip install -e ".[EXTRAS]" unless the same pyproject.toml was
# already installed with the same extras (a stamp in the venv), so reruns take seconds.
install_extras() {
  local extras="$1"
  local stamp="$VENV/.llm3d-install-${extras//,/-}"
  local digest
  digest="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    echo "    .[$extras] already installed for this pyproject.toml"
    return 0
  fi
  if [[ ",$extras," == *",training,"* ]]; then
    python -m pip install --quiet "$TORCH_PIN" || return 1
  fi
  python -m pip install --quiet --upgrade-strategy only-if-needed -e "$ROOT[$extras]" || return 1
  echo "$digest" >"$stamp"
}

# start_reward_service LOG_DIR: reuse the reward service answering at $REWARD_URL, or start
# `llm3d serve --config $CONFIG --port $PORT` (log in LOG_DIR/serve.log) and wait for its
# /healthz. stop_reward_service stops only what start_reward_service started (trap it on EXIT).
SERVER_PID=""
start_reward_service() {
  local log_dir="$1"
  if curl -fsS "$REWARD_URL/healthz" >/dev/null 2>&1; then
    echo "    using the reward service at $REWARD_URL"
    return 0
  fi
  mkdir -p "$log_dir"
  llm3d serve --config "$CONFIG" --port "$PORT" >"$log_dir/serve.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 120); do
    if curl -fsS "$REWARD_URL/healthz" >/dev/null 2>&1; then
      echo "    llm3d serve (pid $SERVER_PID) answers at $REWARD_URL"
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "llm3d serve exited; its log ($log_dir/serve.log):" >&2
      tail -20 "$log_dir/serve.log" >&2
      return 1
    fi
    sleep 1
  done
  echo "llm3d serve did not answer at $REWARD_URL within 120 s (log: $log_dir/serve.log)" >&2
  return 1
}

stop_reward_service() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
