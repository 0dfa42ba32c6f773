#!/usr/bin/env bash
# WebSocket → parsed OKX candle events (issue 3): exchange-sim floods pre-encoded candle pushes
# (pinned to CPU 1); collector-bench receives and parses them with the OKX adapter on one event
# loop pinned to CPU 0. Plain ws and wss (the simulator's generated certificate). Median of REPS.
# Two receivers per mode: "adapter" (the OKX parser alone) and "session" (every frame through the
# connection's ExchangeSession, the collector's per-frame path: parse, routing, checks, actions).
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build). COLLECTOR_BIN: a directory holding
# already-built collector-bench and exchange-sim (e.g. an older checkout's .build/release, to compare
# before and after in one run; with RECEIVERS=adapter if that version has no --session).
#   cluster/bench/ws_parse.sh [MESSAGES] [REPS]
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
N=${1:-2000000}
REPS=${2:-3}
RECEIVERS=${RECEIVERS:-adapter session}
if [ -n "${COLLECTOR_BIN:-}" ]; then
  B=$COLLECTOR_BIN
else
  bench_build collector-bench exchange-sim
  B=$BUILD/release
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in plain tls; do
  extra=()
  [ "$mode" = tls ] && extra=(--tls)
  bench_say "$mode: starting exchange-sim (flood of $N candle pushes)…"
  taskset -c 1 $B/exchange-sim --flood "$N" --no-rate-limits "${extra[@]}" >"$WORK/sim.$mode" 2>&1 &
  sim=$!
  for _ in $(seq 50); do grep -q LISTENING "$WORK/sim.$mode" && break; sleep 0.1; done
  port=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.$mode")
  for receiver in $RECEIVERS; do
    rates=()
    flag=()
    [ "$receiver" = session ] && flag=(--session)
    bench_say "$mode $receiver: $REPS runs…"
    for _ in $(seq "$REPS"); do
      if [ "$mode" = tls ]; then
        cert=$(sed -nE 's/CERTIFICATE (.*)/\1/p' "$WORK/sim.$mode")
        line=$(taskset -c 0 $B/collector-bench ws-parse --url "wss://localhost:$port/ws/v5/business" --messages "$N" --ca "$cert" "${flag[@]}")
      else
        line=$(taskset -c 0 $B/collector-bench ws-parse --url "ws://127.0.0.1:$port/ws/v5/business" --messages "$N" "${flag[@]}")
      fi
      echo "$line"
      rates+=("$(sed -E 's/.*candles_per_sec=([0-9]+).*/\1/' <<<"$line")")
    done
    echo "MEDIAN $mode $receiver candles_per_sec=$(printf '%s\n' "${rates[@]}" | median) (messages=$N, reps=$REPS)"
  done
  kill "$sim" 2>/dev/null || true
done
