#!/usr/bin/env bash
# Phase 3: deploy the reward farm and its API to Modal (worker/farm/modal_app.py + api/modal_web.py).
#
#   export MODAL_TOKEN_ID=ak-... MODAL_TOKEN_SECRET=as-...   # https://modal.com/settings/tokens
#   ./scripts/deploy_reward_api.sh
#
# Checks the modal CLI and the two credentials (a message for each one missing), creates or
# updates the modal.Secret `modal.secret_name` with the API's Bearer token, deploys, prints the
# endpoint and checks its /healthz. The Bearer token is MODAL_TOKEN (or LLM3D_API_TOKEN); when
# neither is set, a new one is generated and printed once. The last lines are what Phase 5
# (scripts/run_rl.sh) reads:
#   export MODAL_ENDPOINT=https://<workspace>--llm3d-reward.modal.run
#   export MODAL_TOKEN=<the Bearer token>
# Settings: LLM3D_ variables (LLM3D_MODAL__SCORE_MAX_CONTAINERS=128 ...; they travel into the
# containers, except the token), HEALTH_TIMEOUT_S (default 300: a cold container is slow).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
HEALTH_TIMEOUT_S="${HEALTH_TIMEOUT_S:-300}"

fail() { echo "deploy_reward_api.sh: $*" >&2; exit 1; }

check_prerequisites() {
  local problems=()
  command -v modal >/dev/null 2>&1 \
    || problems+=("the modal CLI is not on PATH: pip install 'llm3d[modal]' (or: source .venv/bin/activate)")
  [ -n "${MODAL_TOKEN_ID:-}" ] \
    || problems+=("MODAL_TOKEN_ID is not set: create a token at https://modal.com/settings/tokens and export MODAL_TOKEN_ID=ak-...")
  [ -n "${MODAL_TOKEN_SECRET:-}" ] \
    || problems+=("MODAL_TOKEN_SECRET is not set: it comes with MODAL_TOKEN_ID (https://modal.com/settings/tokens); export MODAL_TOKEN_SECRET=as-...")
  command -v curl >/dev/null 2>&1 || problems+=("curl is missing: apt-get install curl")
  if [ "${#problems[@]}" -gt 0 ]; then
    printf 'deploy_reward_api.sh: %s\n' "${problems[@]}" >&2
    exit 1
  fi
}

# modal.app_name and modal.secret_name of the effective configuration
read_config() {
  local names
  names="$(python - <<'PY'
from llm3d.config import load_config
c = load_config()
print(c.modal.app_name, c.modal.secret_name)
PY
)" || fail "cannot read the configuration (see \`llm3d config show\`)"
  read -r APP_NAME SECRET_NAME <<<"$names"
}

api_token() {
  TOKEN="${MODAL_TOKEN:-${LLM3D_API_TOKEN:-}}"
  if [ -z "$TOKEN" ]; then
    TOKEN="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    GENERATED=1
  fi
}

create_secret() {
  local env_file
  env_file="$(mktemp)"
  chmod 600 "$env_file"
  printf 'LLM3D_API_TOKEN=%s\n' "$TOKEN" >"$env_file"   # a file, not argv: ps never shows it
  if ! modal secret create --force "$SECRET_NAME" --from-dotenv "$env_file" >"$LOG/secret.log" 2>&1; then
    rm -f "$env_file"
    fail "modal secret create $SECRET_NAME failed: $(tail -3 "$LOG/secret.log" | tr '\n' ' ')(check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET and that https://api.modal.com is reachable)"
  fi
  rm -f "$env_file"
}

deploy() {
  if ! modal deploy -m api.modal_web 2>&1 | tee "$LOG/deploy.log"; then
    fail "modal deploy failed (log: $LOG/deploy.log)"
  fi
  ENDPOINT="$(grep -oE 'https://[A-Za-z0-9._-]+\.modal\.run' "$LOG/deploy.log" | head -1 || true)"
  [ -n "$ENDPOINT" ] || fail "deployed, but no endpoint URL in the output (log: $LOG/deploy.log); see \`modal app list\`"
}

check_health() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  local per_try=$((HEALTH_TIMEOUT_S < 120 ? HEALTH_TIMEOUT_S : 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS --max-time "$per_try" "$ENDPOINT/healthz" -o "$LOG/healthz.json" 2>/dev/null; then
      cat "$LOG/healthz.json"; echo
      return 0
    fi
    sleep "$((per_try < 5 ? per_try : 5))"
  done
  fail "$ENDPOINT/healthz did not answer within ${HEALTH_TIMEOUT_S}s: \`modal app logs $APP_NAME\` says why"
}

check_prerequisites
LOG="$(mktemp -d "${TMPDIR:-/tmp}/llm3d-deploy.XXXXXX")"
GENERATED=0
read_config
api_token
step "modal.Secret $SECRET_NAME (LLM3D_API_TOKEN)" create_secret
step "modal deploy -m api.modal_web (app $APP_NAME)" deploy
step "GET $ENDPOINT/healthz" check_health
[ "$GENERATED" = 1 ] && echo "A new Bearer token was generated; keep it (it is not shown again):"
echo "export MODAL_ENDPOINT=$ENDPOINT"
echo "export MODAL_TOKEN=$TOKEN"
