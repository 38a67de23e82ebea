#!/usr/bin/env bash
# Runs the same `connections` and `direct` workloads against Spider and its peers, back to back,
# then prints the comparison table (ratios to Spider). Spider's relay is started fresh for each of
# its two targets by spider/start.sh (a new store, abuse limits lifted: see that script), the
# peers by their own start.sh. Every run talks to 127.0.0.1 only, and every phase is bounded.
#
#   bench/peers/compare.sh [OUT_DIR]
#
# Environment (defaults are a small run): CLIENTS=200 PAIRS=1 WINDOW=1 RATE=1000 DURATION=5
# CONCURRENCY=1 PAYLOAD=256 WORKERS=1 SEED=1 TARGETS="spider-quic spider-ws mosquitto node-ws"
# One pair and one connection set-up at a time by default, as when spider-relay deadlocked inside
# sled under concurrent writes (fixed since; docs/benchmarks.md, "Relay"): the defaults keep
# the first published figures comparable. PAIRS=50 CONCURRENCY=50 is the capacity run.
# SPIDER_LOAD=path/to/spider-load (default: build it and spider-relay in release mode).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$(mktemp -d /tmp/spider-compare.XXXXXX)}"
mkdir -p "$out"
CLIENTS="${CLIENTS:-200}"
PAIRS="${PAIRS:-1}"
WINDOW="${WINDOW:-1}"
CONCURRENCY="${CONCURRENCY:-1}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-5}"
PAYLOAD="${PAYLOAD:-256}"
WORKERS="${WORKERS:-1}"
SEED="${SEED:-1}"
TARGETS="${TARGETS:-spider-quic spider-ws mosquitto node-ws}"

if [ -z "${SPIDER_LOAD:-}" ]; then
  (cd "$root" && cargo build --release -p spider-load -p spider-relay >&2)
  SPIDER_LOAD="$root/target/release/spider-load"
fi

# Runs the three workloads against one target; $1 = target, $2 = relay PID (may be empty), then
# any extra spider-load flags (Spider's --ca).
run_workloads() {
  local target="$1" pid="$2"
  shift 2
  local common=(--target "$target" --seed "$SEED" --payload-size "$PAYLOAD" --workers "$WORKERS" --connect-concurrency "$CONCURRENCY" --quiet "$@")
  [ -n "$pid" ] && common+=(--relay-pid "$pid")
  # Each run's summary goes to stderr: stdout carries only the final table.
  "$SPIDER_LOAD" "${common[@]}" --duration "$DURATION" --json "$out/$target-connections.json" \
    connections --clients "$CLIENTS" >&2 || return 1
  "$SPIDER_LOAD" "${common[@]}" --duration "$DURATION" --json "$out/$target-direct.json" \
    direct --pairs "$PAIRS" --window "$WINDOW" >&2 || return 1
  "$SPIDER_LOAD" "${common[@]}" --duration "$DURATION" --json "$out/$target-direct-rate.json" \
    direct --pairs "$PAIRS" --rate "$RATE" >&2 || return 1
}

for target in $TARGETS; do
  echo "== $target" >&2
  case "$target" in
    spider-quic|spider-ws)
      # A fresh relay per transport, so that each starts from the same empty store and RSS.
      pid="$("$here/spider/start.sh")"
      trap '"$here/spider/stop.sh"' EXIT
      run_workloads "$target" "$pid" --ca "${SPIDER_STATE:-/tmp/spider-bench-spider}/ca.pem" \
        || echo "   $target: a run failed" >&2
      "$here/spider/stop.sh"
      trap - EXIT
      ;;
    mosquitto|node-ws)
      pid="$("$here/$target/start.sh")"
      trap '"$here/$target/stop.sh"' EXIT
      run_workloads "$target" "$pid" || echo "   $target: a run failed" >&2
      "$here/$target/stop.sh"
      trap - EXIT
      ;;
    *)
      echo "unknown target $target" >&2
      exit 2
      ;;
  esac
done

shopt -s nullglob
reports=("$out"/*.json)
if [ "${#reports[@]}" -eq 0 ]; then
  echo "no reports" >&2
  exit 1
fi
echo "reports in $out" >&2
"$SPIDER_LOAD" table "${reports[@]}"
