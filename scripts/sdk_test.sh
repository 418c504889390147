#!/usr/bin/env bash
# Checks the JavaScript client SDK (clients/js): its types (tsc --noEmit),
# its package (npm pack --dry-run), its unit tests, and its integration
# tests against real replicas of the given binary (started by the tests on
# free loopback ports, with redis-server and a SecantusDB started here).
#   scripts/sdk_test.sh target/debug/rookery
# Everything started here (or by the tests) is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 <path to the rookery binary>" >&2; exit 2; }
binary=$(realpath "$1")
[ -x "$binary" ] || { echo "$1 is not an executable" >&2; exit 2; }
source scripts/lib.sh

install_servers
command -v node >/dev/null || apt_install nodejs npm
if [ ! -x clients/js/node_modules/.bin/tsc ]; then
  echo "==> installing the SDK's dev dependency (typescript)"
  (cd clients/js && npm ci --no-audit --no-fund --silent)
fi

echo "==> SDK types (tsc --noEmit)"
(cd clients/js && npx --no-install tsc --noEmit -p .)

echo "==> SDK package (npm pack --dry-run)"
(cd clients/js && npm pack --dry-run --silent >/dev/null)

# One SecantusDB for the tests' clusters (each uses its own database); the
# tests that stop or freeze the database start their own.
start_secantus

# Node 20 has a global WebSocket only behind --experimental-websocket
# (Node 22 has it by default; the flag is then accepted and ignored).
node_flags=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)'; then
  node_flags+=(--experimental-websocket --no-warnings=ExperimentalWarning)
fi

echo "==> SDK unit and integration tests (node --test) against $binary"
# One file at a time: each starts its own replicas, and the machine may be busy.
ROOKERY_BIN="$binary" SDK_MONGO_URL="mongodb://127.0.0.1:$mongo_port" SECANTUSD="$SECANTUSD" \
  timeout --kill-after=10 "${SDK_TEST_BUDGET:-420}" \
  node "${node_flags[@]}" --test --test-concurrency=1 --test-timeout=180000 \
  clients/js/test/unit/ clients/js/test/integration/
echo "==> SDK checks passed"
