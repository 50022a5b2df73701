#!/usr/bin/env bash
# Runs the Rust test suite: starts a real httpbin on loopback, then `cargo test --workspace`,
# and closes with one summary line. Extra arguments go to cargo test (e.g. -p outloop-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r url pid < <(scripts/httpbin.sh)
log=$(mktemp -t outloop-test.XXXXXX.log)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
echo "httpbin at $url (pid $pid)" >&2
set +e
OUTLOOP_TEST_HTTPBIN="$url" cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "rust: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
