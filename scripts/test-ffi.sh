#!/usr/bin/env bash
# Tests the C ABI (outloop-ffi) and the packages over it, against a real httpbin:
#   1. header drift: regenerates outloop-ffi/include/outloop.h with the pinned cbindgen
#      (installed with `cargo install --locked` when missing or another version) and fails on
#      any difference;
#   2. builds the library (cdylib + staticlib) and the `outloop` binary (used to set up homes);
#   3. compiles the C example (examples/ffi) against the shared and the static library, runs
#      it, the shared build under valgrind with --leak-check=full;
#   4. pytest over outloop-ffi/python (in .venv, see scripts/test-env.sh);
#   5. npm ci and node --test over outloop-ffi/node.
# Closes with `ffi tests: N passed, M failed` (pytest + node + C checks); exits non-zero when
# any step failed.
# Usage: scripts/test-ffi.sh                 run everything
#        scripts/test-ffi.sh --write-header  regenerate the committed header and exit
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CBINDGEN_VERSION=0.29.2
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "installing cbindgen $CBINDGEN_VERSION" >&2
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
fi
gen_header() { cbindgen --quiet --config outloop-ffi/cbindgen.toml --crate outloop-ffi --output "$1"; }
if [ "${1:-}" = "--write-header" ]; then
  gen_header outloop-ffi/include/outloop.h
  echo "wrote outloop-ffi/include/outloop.h" >&2
  exit 0
fi

tmp=$(mktemp -d -t outloop-ffi.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0 failed=0 status=0
fail_step() { echo "FAILED: $*" >&2; status=1; }

# 1. Header drift.
gen_header "$tmp/outloop.h"
if diff -u outloop-ffi/include/outloop.h "$tmp/outloop.h" >"$tmp/header.diff"; then
  echo "header: outloop-ffi/include/outloop.h matches cbindgen $CBINDGEN_VERSION" >&2
else
  cat "$tmp/header.diff" >&2
  fail_step "outloop.h drifted from the source; run scripts/test-ffi.sh --write-header and commit it"
  failed=$((failed + 1))
fi

# 2. Build.
cargo build --quiet -p outloop-ffi -p outloop-cli
target=${CARGO_TARGET_DIR:-$root/target}/debug
export OUTLOOP_FFI_LIB=$target/liboutloop.so OUTLOOP_BIN=$target/outloop

read -r url pid < <(scripts/httpbin.sh)
export OUTLOOP_TEST_HTTPBIN=$url
echo "httpbin at $url (pid $pid)" >&2

# 3. The C example, on a home made with the real binary. Its secret is a FAKE test value,
# passed on stdin only; the output is checked not to contain it.
secret=FAKE-c-acme-echo-token-3f8e21
home=$tmp/home acme=$tmp/clients/acme
mkdir -p "$acme"
ol() { OUTLOOP_HOME=$home "$OUTLOOP_BIN" "$@" >/dev/null; }
ol init
ol tenant add acme
ol tenant add globex
ol bind "$acme" acme
printf '%s' "$secret" | ol secret set vault://acme/echo --tenant acme --credential echo
sed -i 's|allow_private = \[\]|allow_private = ["127.0.0.0/8"]|' "$home/config.toml"
cat >>"$home/config.toml" <<TOML

[actions."echo.bearer"]
description = "httpbin echoes the bearer token it received"
credential = "echo"
method = "GET"
url = "$url/bearer"
auth = { type = "bearer" }

[actions."echo.delete"]
credential = "echo"
method = "DELETE"
url = "$url/delete"
auth = { type = "bearer" }

[policy.tenants.acme]
allow = ["echo.bearer"]
TOML

cflags=(-std=c11 -Wall -Wextra -Werror -g -I outloop-ffi/include)
gcc "${cflags[@]}" examples/ffi/outloop_example.c -L "$target" -loutloop -Wl,-rpath,"$target" \
  -o "$tmp/example-shared"
gcc "${cflags[@]}" examples/ffi/outloop_example.c "$target/liboutloop.a" -lpthread -ldl -lm \
  -o "$tmp/example-static"

if ! command -v valgrind >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing valgrind" >&2
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
run_c() { # name, command...
  local name=$1
  shift
  # RUST_BACKTRACE=0: the forced panic's hook output stays one line (and fast under valgrind).
  if printf 'config dump: token=%s\n' "$secret" | RUST_BACKTRACE=0 "$@" "$home" "$acme" \
    >"$tmp/$name.out" 2>"$tmp/$name.err"; then
    :
  else
    fail_step "C example ($name) exited non-zero"
  fi
  cat "$tmp/$name.out"
  if grep -q FAKE "$tmp/$name.out" "$tmp/$name.err"; then
    fail_step "C example ($name): a secret reached its output"
    failed=$((failed + 1))
  fi
  local line
  line=$(grep -E '^c example: [0-9]+ passed, [0-9]+ failed$' "$tmp/$name.out" | tail -1 || true)
  if [ -z "$line" ]; then
    fail_step "C example ($name) printed no summary"
    failed=$((failed + 1))
  else
    passed=$((passed + $(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed/\1/')))
  fi
}
run_c static "$tmp/example-static"
if command -v valgrind >/dev/null; then
  # No suppressions: outloop_broker_free joins the handle's runtime threads, so the library
  # leaves nothing lost. What valgrind calls "still reachable" (about 24 KiB: std's and the
  # main thread's process-lifetime allocations) is not a leak and is not counted as an error.
  run_c valgrind valgrind --log-file="$tmp/valgrind.log" --error-exitcode=1 --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    "$tmp/example-shared"
  grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:' \
    "$tmp/valgrind.log" | sed 's/^==[0-9]*== */valgrind: /' >&2 || true
  if grep -qE 'are (definitely|indirectly|possibly) lost|Invalid (read|write|free)|uninitialised' \
    "$tmp/valgrind.log"; then
    cat "$tmp/valgrind.log" >&2
    fail_step "valgrind reported a leak or a memory error"
    failed=$((failed + 1))
  fi
else
  fail_step "valgrind is not available (and could not be installed)"
  run_c shared "$tmp/example-shared"
fi

# 4. Python.
scripts/test-env.sh >&2
set +e
(cd outloop-ffi/python && "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider) 2>&1 | tee "$tmp/pytest.out"
py=${PIPESTATUS[0]}
set -e
[ "$py" = 0 ] || fail_step "pytest exited $py"
p=$(grep -oE '[0-9]+ passed' "$tmp/pytest.out" | tail -1 | cut -d' ' -f1 || true)
f=$( (grep -oE '[0-9]+ (failed|errors?)' "$tmp/pytest.out" || true) | awk '{s+=$1} END {print s+0}')
passed=$((passed + ${p:-0}))
failed=$((failed + f))
if [ -z "$p" ] && [ "$f" = 0 ]; then failed=$((failed + 1)); fi

# 5. Node.
set +e
(cd outloop-ffi/node && npm ci --no-audit --no-fund --loglevel=error >&2 &&
  node --test --test-reporter=tap test/) >"$tmp/node.out" 2>&1
nd=$?
set -e
grep -E '^(not ok|# (tests|pass|fail))' "$tmp/node.out" || true
[ "$nd" = 0 ] || { cat "$tmp/node.out" >&2; fail_step "node --test exited $nd"; }
p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$tmp/node.out" | tail -1 || true)
f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$tmp/node.out" | tail -1 || true)
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-1}))

echo "ffi: $passed passed, $failed failed"
if [ "$failed" != 0 ]; then status=1; fi
exit "$status"
