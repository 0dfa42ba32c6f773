#!/usr/bin/env bash
# WebSocket receive benchmark (issue 2): ~180-byte OKX trade frames, pre-encoded by a sender pinned
# to CPU 1, received by our WebSocketChannel pinned to CPU 0 (taskset). Plain ws and wss.
# Prints one line per run and the median per transport.
#   cluster/bench/ws_receive.sh [FRAMES] [REPS]
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
FRAMES=${1:-2000000}
REPS=${2:-3}
bench_build collector-bench
BENCH=$BUILD/release/collector-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A throw-away certificate for the wss run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() {
  local label=$1 scheme=$2; shift 2
  taskset -c 1 "$BENCH" ws-sender --frames "$FRAMES" "$@" >"$WORK/sender.$label" 2>&1 &
  local sender=$!
  bench_say "$label: $REPS runs of $FRAMES frames…"
  for _ in $(seq 50); do grep -q LISTENING "$WORK/sender.$label" && break; sleep 0.1; done
  local port
  port=$(awk '/LISTENING/{print $2}' "$WORK/sender.$label")
  local rates=()
  for _ in $(seq "$REPS"); do
    local ca=()
    [ "$scheme" = wss ] && ca=(--ca "$WORK/cert.pem")
    line=$(taskset -c 0 "$BENCH" ws-receive --url "$scheme://localhost:$port/" --frames "$FRAMES" "${ca[@]}")
    echo "$line"
    rates+=("$(sed -E 's/.*frames_per_sec=([0-9]+).*/\1/' <<<"$line")")
  done
  kill "$sender" 2>/dev/null || true
  echo "MEDIAN $label frames_per_sec=$(printf '%s\n' "${rates[@]}" | median) (frames=$FRAMES, reps=$REPS)"
}

run plain ws
run tls wss --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
