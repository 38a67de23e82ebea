#!/usr/bin/env bash
# Stops the Node.js ws relay peer started by start.sh (by its recorded PID).
set -euo pipefail
state="${NODE_WS_STATE:-/tmp/spider-bench-node-ws}"
[ -f "$state/pid" ] || { echo "node-ws: not running" >&2; exit 0; }
pid="$(cat "$state/pid")"
kill "$pid" 2>/dev/null || true
for _ in $(seq 50); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
rm -f "$state/pid"
