#!/usr/bin/env bash
# Starts a real httpbin under gunicorn on 127.0.0.1 with a free port, in the background.
# Prints `URL PID` on stdout once the server answers. Usage: read -r url pid < <(scripts/httpbin.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-env.sh >&2
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp -t outloop-httpbin.XXXXXX.log)
# --no-control-socket: several servers may run at once; gunicorn 23+ would share one socket.
.venv/bin/gunicorn --bind "127.0.0.1:$port" --workers 4 --threads 4 --no-control-socket \
  --access-logfile /dev/null --error-logfile "$log" httpbin:app </dev/null >/dev/null 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('$url/get', timeout=1)" 2>/dev/null; then
    echo "$url $pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "httpbin failed to start; log: $log" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
echo "httpbin did not answer within 30 s; log: $log" >&2
kill "$pid" 2>/dev/null || true
exit 1
