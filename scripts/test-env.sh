#!/usr/bin/env bash
# Creates .venv with the test servers (httpbin under gunicorn) if it is missing or stale.
# Usage: scripts/test-env.sh            (idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/gunicorn ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "python3 has no venv module; installing python3-venv" >&2
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
