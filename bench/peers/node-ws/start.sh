#!/usr/bin/env bash
# Starts the Node.js ws relay peer on 127.0.0.1:PORT (default 18084) in the background.
# Installs its one dependency (ws, from package-lock.json) on first use. Prints the PID, which
# spider-load takes as --relay-pid. State (pid, log) lives in $NODE_WS_STATE.
#   bench/peers/node-ws/start.sh [PORT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${1:-${PORT:-18084}}"
state="${NODE_WS_STATE:-/tmp/spider-bench-node-ws}"

command -v node >/dev/null || { echo "node-ws: node is missing (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }
if [ ! -d "$here/node_modules/ws" ]; then
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
mkdir -p "$state"
if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  echo "node-ws: already running as $(cat "$state/pid") (stop.sh first)" >&2
  exit 1
fi
nohup node "$here/server.js" --port "$port" >"$state/log" 2>&1 &
pid=$!
echo "$pid" >"$state/pid"
# Wait (at most 10 s) for the listening line.
for _ in $(seq 100); do
  if grep -q '^listening ' "$state/log" 2>/dev/null; then
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "node-ws: did not start; log:" >&2
cat "$state/log" >&2
exit 1
