#!/usr/bin/env bash
# Starts spider-relay for spider-load on 127.0.0.1:PORT (QUIC on UDP and WebSocket-over-TLS on
# TCP, one port number; default 4433), with a fresh data directory and a benchmark configuration.
# Prints the PID, which spider-load takes as --relay-pid; the CA to pin is $SPIDER_STATE/ca.pem
# (a copy of DATA/certs/ca.pem), for --ca.
#
#   bench/peers/spider/start.sh [PORT]
#
# The benchmark's clients come from a few loopback addresses (127.0.0.2, ...) and send flat out,
# so the relay's abuse limits, which are per IP address, per account and per connection, would
# refuse the run long before the relay is busy: the configuration written here lifts them
# (connections per IP, registrations per hour, requests per second per connection, account and
# address, mailbox quota, total connections, handshake timeout; spider-load's reconnect-storm
# writes the same, bench/src/relay.rs, and a test checks the two agree). Everything else keeps
# the relay's defaults, including durable storage before `Sent` and the 256-frame slow-consumer
# queue, and the room limits (1024 members).
#
# Environment: SPIDER_RELAY=path/to/spider-relay (default: target/release/spider-relay, built if
# missing), SPIDER_STATE (default /tmp/spider-bench-spider), RUST_LOG (default warn).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
port="${1:-${PORT:-4433}}"
state="${SPIDER_STATE:-/tmp/spider-bench-spider}"
relay="${SPIDER_RELAY:-$root/target/release/spider-relay}"

if [ ! -x "$relay" ]; then
  (cd "$root" && cargo build --release -p spider-relay >&2)
fi
mkdir -p "$state"
if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  echo "spider: already running as $(cat "$state/pid") (stop.sh first)" >&2
  exit 1
fi
# A fresh store each time: every run registers its own accounts.
rm -rf "$state/data"
mkdir -p "$state/data"
cat >"$state/relay.toml" <<'TOML'
# spider-load benchmark: abuse limits lifted (every client shares 127.0.0.1 and sends flat out).
[limits]
max_connections = 500000
max_connections_per_ip = 500000
registrations_per_hour = 100000000
registration_burst = 10000000
requests_per_second = 10000000
request_burst = 10000000
account_requests_per_second = 10000000
account_request_burst = 10000000
ip_requests_per_second = 10000000
ip_request_burst = 10000000
mailbox_quota = 10000000
handshake_timeout_ms = 120000
TOML
RUST_LOG="${RUST_LOG:-warn}" nohup "$relay" serve --data "$state/data" \
  --quic "127.0.0.1:$port" --ws "127.0.0.1:$port" --no-metrics \
  --config "$state/relay.toml" >"$state/log" 2>&1 &
pid=$!
echo "$pid" >"$state/pid"
# Wait (at most 20 s) for the development CA and the TCP listener.
for _ in $(seq 200); do
  if [ -s "$state/data/certs/ca.pem" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    cp "$state/data/certs/ca.pem" "$state/ca.pem"
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "spider: did not start; log:" >&2
cat "$state/log" >&2
exit 1
