#!/usr/bin/env bash
# Builds the cargo-fuzz target for the streaming redactor (fuzz/), installing cargo-fuzz
# if it is missing. Works on the stable toolchain: cargo-fuzz needs `-Z` flags, which
# RUSTC_BOOTSTRAP=1 unlocks on stable (or use a nightly toolchain: `cargo +nightly fuzz`).
#
# Cost on the 2-core CI machine: installing cargo-fuzz once ~1.5 min (skipped when present);
# the first build of the target ~4-5 min (outloop-core's dependency tree with the sanitizer
# flags, in fuzz/target); rebuilds after a change ~30 s.
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
echo "fuzz target built: fuzz/target/*/release/redact_stream"
