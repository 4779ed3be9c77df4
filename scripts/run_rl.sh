#!/usr/bin/env bash
# GRPO against the reward service with `llm3d rl` (configs/rl.yaml; DESIGN §7).
#
#   ./scripts/run_rl.sh --init-from runs/sft/checkpoints/step-000400   # after run_sft.sh
#   BACKEND=tinker ./scripts/run_rl.sh ...        # Tinker (TINKER_API_KEY; a Qwen3-VL model)
#   TINY=1 ./scripts/run_rl.sh --steps 5          # CPU smoke run with the tiny model
#   ./scripts/run_rl.sh --resume latest           # continue the run where it stopped
#
# A reward service already answering at REWARD_URL is used (e.g. the compose farm);
# otherwise `llm3d serve` (inline backend) is started here and stopped at the end.
# The deployed farm (scripts/deploy_reward_api.sh) is named as in the seed's Phase 5:
#   MODAL_ENDPOINT=https://...modal.run MODAL_TOKEN=... ./scripts/run_rl.sh
# (aliases of REWARD_URL and LLM3D_API_TOKEN; a remote service must answer, none is started).
# Logs (mean reward, execution rate, F@0.05, statuses, tokens, seconds a phase),
# checkpoints and reward.png: runs/<run_name>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CONFIG="${CONFIG:-configs/rl.yaml}"
BACKEND="${BACKEND:-}"
PORT="${PORT:-8000}"
REWARD_URL="${REWARD_URL:-${MODAL_ENDPOINT:-http://127.0.0.1:$PORT}}"
if [ -z "${LLM3D_API_TOKEN:-}" ] && [ -n "${MODAL_TOKEN:-}" ]; then
  export LLM3D_API_TOKEN="$MODAL_TOKEN"
fi
LOG_DIR="${LOG_DIR:-runs}"
EXTRAS="blender,metrics,farm,training"
[ "$BACKEND" = "tinker" ] && EXTRAS="$EXTRAS,tinker"
args=(--config "$CONFIG" --reward-url "$REWARD_URL")
[ -n "$BACKEND" ] && args+=(--backend "$BACKEND")
[ -n "${TINY:-}" ] && args+=(--tiny)

trap stop_reward_service EXIT

start_server() {
  case "$REWARD_URL" in
    http://127.0.0.1:*|http://localhost:*) start_reward_service "$LOG_DIR" ;;
    *)  # a remote service (MODAL_ENDPOINT): use it, never start a local one in its place
      curl -fsS --max-time 120 "$REWARD_URL/healthz" >/dev/null || {
        echo "the reward service at $REWARD_URL does not answer /healthz: deploy it with" \
          "./scripts/deploy_reward_api.sh, or check MODAL_ENDPOINT" >&2
        return 1
      }
      echo "    using the reward service at $REWARD_URL" ;;
  esac
}

step "create or reuse .venv" ensure_venv
step "install llm3d with the $EXTRAS extras (torch pinned first)" install_extras "$EXTRAS"
step "start or reuse the reward service" start_server
step "GRPO (llm3d rl)" llm3d rl "${args[@]}" "$@"
