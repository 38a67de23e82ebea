#!/usr/bin/env bash
# Stops the relay started by start.sh (by its recorded PID) and removes its data directory.
set -euo pipefail
state="${SPIDER_STATE:-/tmp/spider-bench-spider}"
[ -f "$state/pid" ] || { echo "spider: not running" >&2; exit 0; }
pid="$(cat "$state/pid")"
kill "$pid" 2>/dev/null || true
# The relay drains (Drain to every client, up to drain_grace_ms) before it exits.
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
rm -f "$state/pid"
rm -rf "$state/data"
