#!/usr/bin/env bash
# Runs every test suite: the Rust workspace (scripts/test-rust.sh, against a real httpbin) and
# the C ABI with its C example, Python and Node packages (scripts/test-ffi.sh), the alias
# proxy from an unmodified HTTP client (scripts/test-proxy.sh), and the vendor fakes proved
# against the vendors' own clients (scripts/test-fakes.sh). Each suite
# runs even when an earlier one failed; the last line sums them up.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$(mktemp -d -t outloop-tests.XXXXXX)
trap 'rm -rf "$logs"' EXIT

scripts/test-rust.sh 2>&1 | tee "$logs/rust.log"
rust=${PIPESTATUS[0]}
scripts/test-ffi.sh 2>&1 | tee "$logs/ffi.log"
ffi=${PIPESTATUS[0]}
scripts/test-proxy.sh 2>&1 | tee "$logs/proxy.log"
proxy=${PIPESTATUS[0]}
scripts/test-fakes.sh 2>&1 | tee "$logs/fakes.log"
fakes=${PIPESTATUS[0]}

awk '/^(rust|ffi|proxy|fakes): [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "all: %d passed, %d failed\n", p, f }' \
    "$logs/rust.log" "$logs/ffi.log" "$logs/proxy.log" "$logs/fakes.log"
[ "$rust" = 0 ] && [ "$ffi" = 0 ] && [ "$proxy" = 0 ] && [ "$fakes" = 0 ]
