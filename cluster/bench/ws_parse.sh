#!/usr/bin/env bash
# WebSocket → parsed OKX candle events (issue 3): exchange-sim floods pre-encoded candle pushes
# (pinned to CPU 1); collector-bench receives and parses them with the OKX adapter on one event
# loop pinned to CPU 0. Plain ws and wss (the simulator's generated certificate). Median of REPS.
#   cluster/bench/ws_parse.sh [MESSAGES] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000000}
REPS=${2:-3}
swift build -c release --product collector-bench >/dev/null
swift build -c release --product exchange-sim >/dev/null
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in plain tls; do
  extra=()
  [ "$mode" = tls ] && extra=(--tls)
  taskset -c 1 .build/release/exchange-sim --flood "$N" --no-rate-limits "${extra[@]}" >"$WORK/sim.$mode" 2>&1 &
  sim=$!
  for _ in $(seq 50); do grep -q LISTENING "$WORK/sim.$mode" && break; sleep 0.1; done
  port=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.$mode")
  rates=()
  for _ in $(seq "$REPS"); do
    if [ "$mode" = tls ]; then
      cert=$(sed -nE 's/CERTIFICATE (.*)/\1/p' "$WORK/sim.$mode")
      line=$(taskset -c 0 .build/release/collector-bench ws-parse --url "wss://localhost:$port/ws/v5/business" --messages "$N" --ca "$cert")
    else
      line=$(taskset -c 0 .build/release/collector-bench ws-parse --url "ws://127.0.0.1:$port/ws/v5/business" --messages "$N")
    fi
    echo "$line"
    rates+=("$(sed -E 's/.*candles_per_sec=([0-9]+).*/\1/' <<<"$line")")
  done
  kill "$sim" 2>/dev/null || true
  echo "MEDIAN $mode candles_per_sec=$(printf '%s\n' "${rates[@]}" | median) (messages=$N, reps=$REPS)"
done
