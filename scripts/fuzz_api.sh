#!/usr/bin/env bash
# Fuzzes the server API from its own OpenAPI document against a live
# replica (schemathesis, from PyPI): fails on any 5xx, on any request the
# document calls valid that the replica refuses, on any request it calls
# invalid that the replica accepts, and on any response that breaks its
# schema. Seeded, so a run is repeatable; FUZZ_SEED=random varies it.
# Usage: scripts/fuzz_api.sh [path to the rookery binary]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
binary="${1:-target/debug/rookery}"
FUZZ="$TOOLS/fuzz/bin"
if [ ! -x "$FUZZ/schemathesis" ]; then
  echo "==> installing schemathesis into $TOOLS/fuzz"
  python3 -m venv "$TOOLS/fuzz"
  "$FUZZ/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
seed="${FUZZ_SEED:-20261207}"
[ "$seed" = random ] && seed=$RANDOM$RANDOM

dir=$(mktemp -d); scratch+=("$dir")
port=$(free_port)
key="fuzz-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# No per-key rate: the fuzzer's requests are the load, not a refusal to test.
HOST=127.0.0.1 PORT="$port" DATA_DIR="$dir" API_KEYS="$key" API_RATE_LIMIT=0 \
  RUST_LOG=warn "$binary" >"$dir/log" 2>&1 &
pids+=($!)
wait_for_port "$port" rookery "$!"

run() { # mode, checks, extra arguments
  local mode=$1 checks=$2; shift 2
  # From the scratch directory: schemathesis keeps its cache where it runs.
  if ! (cd "$dir" && "$FUZZ/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
      -H "Authorization: Bearer $key" --mode "$mode" --checks "$checks" \
      --seed "$seed" --no-shrink --workers 1 --max-failures 10 "$@"); then
    echo "--- the replica's log:" >&2; tail -n 50 "$dir/log" >&2
    return 1
  fi
}
echo "==> schema-valid requests (seed $seed): accepted, no 5xx, answers as documented"
run positive not_a_server_error,positive_data_acceptance,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples 50
echo "==> schema-invalid requests: refused, no 5xx"
run negative not_a_server_error,negative_data_rejection,response_schema_conformance,content_type_conformance \
  --max-examples 30 --phases examples,coverage,fuzzing
