#!/usr/bin/env bash
# Starts Mosquitto as spider-load's peer: MQTT over WebSocket on 127.0.0.1:PORT (default 18083),
# QoS 1, persistence into a fresh directory (plus a plain MQTT listener on PORT+10, which this
# Mosquitto build needs to start at all: see mosquitto.conf). Installs the Debian package if mosquitto is missing.
# Prints the PID, which spider-load takes as --relay-pid. State lives in $MOSQUITTO_STATE.
#   bench/peers/mosquitto/start.sh [PORT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${1:-${PORT:-18083}}"
tcp_port="${MOSQUITTO_TCP_PORT:-$((port + 10))}"  # plain MQTT listener, see mosquitto.conf
state="${MOSQUITTO_STATE:-/tmp/spider-bench-mosquitto}"

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  # The package index is refreshed only if the plain install fails (it is slow).
  apt-get install -y mosquitto >&2 || { apt-get update >&2 && apt-get install -y mosquitto >&2; }
fi
bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  echo "mosquitto: already running as $(cat "$state/pid") (stop.sh first)" >&2
  exit 1
fi
# A fresh persistence directory per start: no queues left from an earlier run.
rm -rf "$state/data"
mkdir -p "$state/data"
sed -e "s|@PORT@|$port|g" -e "s|@TCP_PORT@|$tcp_port|g" -e "s|@STATE@|$state|g" "$here/mosquitto.conf" >"$state/mosquitto.conf"
# Started as root, mosquitto drops to the `mosquitto` user, which must own its directory.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto "$state"
fi
# One descriptor per WebSocket: take the whole hard limit.
ulimit -n "$(ulimit -Hn)"
nohup "$bin" -c "$state/mosquitto.conf" >"$state/stdout.log" 2>&1 &
pid=$!
echo "$pid" >"$state/pid"
# Wait (at most 10 s) until the listener accepts.
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "mosquitto: did not start; logs:" >&2
cat "$state/stdout.log" "$state/mosquitto.log" >&2 2>/dev/null || true
exit 1
