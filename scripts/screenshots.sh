#!/usr/bin/env bash
# Regenerates docs/screenshots/{desktop,phone,edits}.png (shown in the README)
# from the browser test's last steps: a real server, real Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin rookery
SCREENSHOT_DIR=docs/screenshots node tests/browser/run.mjs target/debug/rookery
echo "==> docs/screenshots/desktop.png, phone.png and edits.png"
