#!/usr/bin/env bash
# Runs the whole test suite: starts a real httpbin on loopback, then `cargo test --workspace`.
# Extra arguments go to cargo test, e.g. scripts/test.sh -p outloop-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r url pid < <(scripts/httpbin.sh)
trap 'kill "$pid" 2>/dev/null || true' EXIT
echo "httpbin at $url (pid $pid)" >&2
OUTLOOP_TEST_HTTPBIN="$url" cargo test --workspace "$@"
