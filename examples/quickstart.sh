#!/usr/bin/env bash
# The main job, end to end, on the embedded default vault:
#   a bound workspace, a stored credential, an action whose upstream (a real httpbin on
#   loopback) reflects the credential, shown redacted, and a wrong-tenant request, denied.
# Everything lives in a throwaway OUTLOOP_HOME; nothing outside it is touched.
# Usage: examples/quickstart.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

echo "building outloop…" >&2
cargo build --quiet -p outloop-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)[\"target_directory\"])")
outloop_bin="$target_dir/debug/outloop"
outloop() { "$outloop_bin" "$@"; }

read -r httpbin httpbin_pid < <(scripts/httpbin.sh)
demo=$(mktemp -d -t outloop-quickstart.XXXXXX)
trap 'kill "$httpbin_pid" 2>/dev/null || true; rm -rf "$demo"' EXIT
export OUTLOOP_HOME="$demo/home"
mkdir -p "$demo/clients/acme" "$demo/clients/globex" "$demo/elsewhere"

# Synthetic tokens (obviously fake). They go in through stdin, never argv.
acme_token="FAKE-acme-httpbin-token-$RANDOM$RANDOM"
globex_token="FAKE-globex-httpbin-token-$RANDOM$RANDOM"

show() { printf '\n$ %s\n' "$*"; }
transcript=$(mktemp -t outloop-quickstart-out.XXXXXX)
run() { show "$@"; "$@" 2>&1 | tee -a "$transcript"; }

run outloop init
run outloop tenant add acme
run outloop tenant add globex
run outloop bind "$demo/clients/acme" acme
run outloop bind "$demo/clients/globex" globex
show "printf '…acme token…' | outloop secret set vault://acme/httpbin --tenant acme --credential httpbin"
printf '%s' "$acme_token" | outloop secret set vault://acme/httpbin --tenant acme --credential httpbin 2>&1 | tee -a "$transcript"
show "printf '…globex token…' | outloop secret set vault://globex/httpbin --tenant globex --credential httpbin"
printf '%s' "$globex_token" | outloop secret set vault://globex/httpbin --tenant globex --credential httpbin 2>&1 | tee -a "$transcript"

# An action pack for httpbin (picked up by `include = ["actions/*.toml"]`), the loopback
# egress exception it needs, and a policy that allows it for acme.
cat > "$OUTLOOP_HOME/actions/httpbin.toml" <<TOML
[actions."httpbin.bearer"]
description = "httpbin /bearer: reports the bearer token it received"
credential = "httpbin"
method = "GET"
url = "$httpbin/bearer"
auth = { type = "bearer" }

[actions."httpbin.headers"]
description = "httpbin /headers: echoes every request header"
credential = "httpbin"
method = "GET"
url = "$httpbin/headers"
auth = { type = "header", name = "X-Api-Key", format = "Key {secret}" }
TOML
sed -i 's|^allow_private = \[\]|allow_private = ["127.0.0.0/8"]|' "$OUTLOOP_HOME/config.toml"
cat >> "$OUTLOOP_HOME/config.toml" <<'TOML'

[policy.tenants.acme]
allow = ["httpbin.*"]
TOML
show "cat \$OUTLOOP_HOME/actions/httpbin.toml"; cat "$OUTLOOP_HOME/actions/httpbin.toml"

cd "$demo/clients/acme"
run outloop actions
run outloop call httpbin.bearer --json
run outloop call httpbin.headers

echo
echo "# the same agent asks for another client's credential: denied before any backend is read"
show outloop call httpbin.bearer --tenant globex
set +e
outloop call httpbin.bearer --tenant globex 2>&1 | tee -a "$transcript"
denied=${PIPESTATUS[0]}
set -e
echo "(exit code $denied)"

cd "$demo/elsewhere"
show outloop call httpbin.bearer "   # from a directory bound to no tenant"
set +e
outloop call httpbin.bearer 2>&1 | tee -a "$transcript"
unbound=${PIPESTATUS[0]}
set -e
echo "(exit code $unbound)"

run outloop audit tail
run outloop audit verify

# The quickstart checks itself, so CI proves it shows what it claims.
fail() { echo "quickstart check failed: $*" >&2; exit 1; }
grep -q '\\"token\\": \\"\[REDACTED:httpbin\]\\"' "$transcript" || fail "the redacted bearer token was not shown"
grep -q '"X-Api-Key": "Key \[REDACTED:httpbin\]"' "$transcript" || fail "the redacted header was not shown"
[ "$denied" = 3 ] || fail "the wrong-tenant request exited $denied, not 3"
[ "$unbound" = 3 ] || fail "the unbound request exited $unbound, not 3"
grep -q "$acme_token\|$globex_token" "$transcript" && fail "a token appeared in the output"
rm -f "$transcript"
echo
echo "quickstart: OK (the credential was applied host-side and shown only as [REDACTED:httpbin]; the wrong-tenant and unbound requests were denied)"
