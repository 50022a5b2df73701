#!/usr/bin/env bash
# Builds the cargo-fuzz target for the streaming redactor (fuzz/), installing cargo-fuzz
# if it is missing. Works on the stable toolchain: cargo-fuzz needs `-Z` flags, which
# RUSTC_BOOTSTRAP=1 unlocks on stable (or use a nightly toolchain: `cargo +nightly fuzz`).
#
# Cost, measured on the 2-core machine: installing cargo-fuzz once, a few minutes (skipped when
# present); the first build of the target 12 CPU-minutes (outloop-core's whole dependency tree
# with sanitizer flags, under target/<triple>/; 23 min wall here while other builds shared the cores,
# so expect ~6-7 min on an idle machine); a rebuild after a change to outloop-core 1.4
# CPU-minutes (2 min wall). .ci/run builds the target
# uninstrumented instead (`cargo build -p outloop-fuzz`), which reuses the workspace build.
#
# Run the fuzzer (not in CI), e.g. for 10 minutes:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run redact_stream --fuzz-dir fuzz -- -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build redact_stream --fuzz-dir fuzz "$@"
echo "fuzz target built: target/*/release/redact_stream"
