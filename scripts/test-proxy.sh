#!/usr/bin/env bash
# Tests the alias proxy (`outloop proxy`) from outside: pytest over outloop-cli/tests/python
# drives the built `outloop` with an unmodified HTTP client (httpx, see tests/requirements.txt)
# against a real httpbin and a loopback server-sent-events upstream.
# Closes with `proxy: N passed, M failed`; exits non-zero when any test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/test-env.sh >&2
cargo build --quiet -p outloop-cli
export OUTLOOP_BIN=${CARGO_TARGET_DIR:-$root/target}/debug/outloop
read -r url pid < <(scripts/httpbin.sh)
tmp=$(mktemp -d -t outloop-proxy.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
export OUTLOOP_TEST_HTTPBIN=$url
echo "httpbin at $url (pid $pid)" >&2
set +e
(cd outloop-cli/tests/python && "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider) 2>&1 | tee "$tmp/pytest.out"
py=${PIPESTATUS[0]}
set -e
p=$(grep -oE '[0-9]+ passed' "$tmp/pytest.out" | tail -1 | cut -d' ' -f1 || true)
f=$( (grep -oE '[0-9]+ (failed|errors?)' "$tmp/pytest.out" || true) | awk '{s+=$1} END {print s+0}')
if [ -z "$p" ] && [ "$f" = 0 ]; then f=1; fi
echo "proxy: ${p:-0} passed, $f failed"
[ "$py" = 0 ] && [ "$f" = 0 ]
