#!/usr/bin/env bash
# Runs every check Rookery has, on a fresh machine: installs what is missing
# (apt-get, npm), then formatting, lints, unit and integration tests, and the
# headless-Chromium browser test against a real server on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> installing playwright-core"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --quiet

echo "==> browser test (headless Chromium)"
cargo build --quiet --bin rookery
node tests/browser/run.mjs target/debug/rookery
echo "==> all checks passed"
