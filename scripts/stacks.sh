#!/usr/bin/env bash
# The compose stacks, run for real (called by scripts/test.sh; needs root):
# for the Redis, RabbitMQ and NATS stacks in turn, `up --scale app=5` on a
# private Docker engine, wait until every replica is healthy and routed by
# traefik and scraped by Prometheus, then tests/stacks.rs through traefik
# (sticky clients on every replica chatting once and in order, presence, a
# direct message, an avatar across replicas, one replica drained and one
# killed with nothing lost; on the Redis stack a rolling restart of every
# replica under `rookery-bench verify`), then `down -v` with nothing left. The basic
# docker-compose.yaml (one app and its database) gets a shorter run.
# Every stage's wall time goes to stdout and target/stacks/report.md.
#
#   scripts/stacks.sh [redis rabbit nats basic]
#
# Images are built on this machine, none pulled (see scripts/docker.sh), and
# the MongoDB service is replaced (deploy/test/compose.override.yaml).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/docker.sh
TRAEFIK="$TOOLS/traefik/bin/traefik"
stacks=("$@"); [ ${#stacks[@]} -gt 0 ] || stacks=(redis rabbit nats basic)
replicas=5
[ "$(id -u)" -eq 0 ] || { echo "scripts/stacks.sh runs dockerd, which needs root" >&2; exit 1; }

mkdir -p target/stacks
report="$PWD/target/stacks/report.md"
echo "## $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >>"$report"
# stage NAME COMMAND...: runs it and records how long it took.
stage() {
  local name=$1; shift
  local started=$SECONDS
  "$@"
  echo "- $name: $((SECONDS - started)) s" | tee -a "$report"
}

project=
compose() { docker compose -p "$project" "${files[@]}" "$@"; }
teardown() {
  if [ -n "$project" ]; then
    compose logs --no-color --tail 30 app >&2 2>/dev/null || true
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    project=
  fi
}
trap 'teardown; cleanup' EXIT
trap 'echo "scripts/stacks.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# wait_until SECONDS WHAT COMMAND...: retries COMMAND until it succeeds.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "not within $limit s: $what" >&2; return 1; }
    sleep 1
  done
}

# Every replica answers through traefik: distinct nodes behind one host.
routed_nodes() {
  local nodes=()
  for _ in $(seq 1 40); do
    nodes+=("$(curl -fsS -H 'Host: app.docker.localhost' "http://127.0.0.1:$HTTP_PORT/readyz" | jq -r .node 2>/dev/null || true)")
  done
  [ "$(printf '%s\n' "${nodes[@]}" | grep -c . | tr -d ' ')" -gt 0 ] || return 1
  [ "$(printf '%s\n' "${nodes[@]}" | grep . | sort -u | wc -l)" -eq "$replicas" ]
}

scraped() {
  [ "$(curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/targets" \
    | jq '[.data.activeTargets[] | select(.health == "up")] | length')" -eq "$replicas" ]
}

nothing_left() {
  [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$1")" ] \
    && [ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$1")" ] \
    && [ -z "$(docker network ls -q --filter "label=com.docker.compose.project=$1")" ]
}

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ]; }

# A rolling restart (each replica in turn: SIGTERM, drained, started again)
# while rookery-bench verify drives clients through traefik: nothing lost,
# repeated or out of order, presence agreeing (README: checking a rolling
# upgrade).
rolling_restart_verified() {
  target/debug/rookery-bench verify --target "http://127.0.0.1:$HTTP_PORT" --host app.docker.localhost \
    --clients 10 --seconds 60 --interval-ms 500 --settle-seconds 90 &
  local verify=$! container
  sleep 5
  for container in $(docker ps -aq --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=app"); do
    docker restart --time 20 "$container" >/dev/null
    wait_until 90 "replica $container healthy again" healthy "$container"
  done
  wait "$verify"
}

run_stack() {
  local stack=$1
  echo "### $stack stack" | tee -a "$report"
  project="rookery-$stack"
  files=(-f "docker-compose.$stack.yaml" -f deploy/test/compose.override.yaml)
  export HTTP_PORT DASHBOARD_PORT PROMETHEUS_PORT NATS_MONITOR_PORT RABBIT_UI_PORT
  HTTP_PORT=$(free_port); DASHBOARD_PORT=$(free_port); PROMETHEUS_PORT=$(free_port)
  NATS_MONITOR_PORT=$(free_port); RABBIT_UI_PORT=$(free_port)
  stage "up --scale app=$replicas, all healthy" \
    compose up -d --scale "app=$replicas" --wait --wait-timeout 240 --quiet-pull
  stage "traefik routes to all $replicas" wait_until 60 "traefik routing to $replicas replicas" routed_nodes
  stage "prometheus scrapes all $replicas" wait_until 90 "prometheus scraping $replicas replicas" scraped
  stage "clients through traefik (tests/stacks.rs)" \
    env STACK_URL="http://127.0.0.1:$HTTP_PORT" STACK_PROJECT="$project" STACK_REPLICAS="$replicas" \
    cargo test --quiet --test stacks -- --ignored --nocapture five_replicas
  if [ "$stack" = redis ]; then
    stage "a rolling restart under rookery-bench verify" rolling_restart_verified
  fi
  stage "down -v" compose down -v --remove-orphans
  nothing_left "$project" || { echo "$project left containers, volumes or networks behind" >&2; return 1; }
  project=
}

run_basic() {
  echo "### basic stack (docker-compose.yaml)" | tee -a "$report"
  project=rookery
  files=(-f docker-compose.yaml -f deploy/test/compose.override.yaml)
  export APP_PORT PROMETHEUS_PORT
  APP_PORT=$(free_port); PROMETHEUS_PORT=$(free_port)
  stage "up, healthy" compose up -d --wait --wait-timeout 180 --quiet-pull
  stage "a user chats (tests/stacks.rs)" \
    env STACK_URL="http://127.0.0.1:$APP_PORT" cargo test --quiet --test stacks -- --ignored --nocapture one_app
  stage "down -v" compose down -v --remove-orphans
  nothing_left "$project" || { echo "the basic stack left something behind" >&2; return 1; }
  project=
}

started=$SECONDS
stage "release build" cargo build --quiet --release --bin rookery
stage "docker engine and compose v2" install_docker
stage "dockerd started" start_docker
docker compose version
stage "images (cached by their inputs)" build_images
cargo build --quiet --tests
cargo build --quiet -p rookery-bench
for stack in "${stacks[@]}"; do
  case "$stack" in
    basic) run_basic ;;
    redis | rabbit | nats) run_stack "$stack" ;;
    *) echo "unknown stack $stack" >&2; exit 2 ;;
  esac
done
stop_docker
echo "- all stacks: $((SECONDS - started)) s" | tee -a "$report"
