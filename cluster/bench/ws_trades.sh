#!/usr/bin/env bash
# OKX trades (issue 9): exchange-sim floods pre-encoded `trades-all` pushes, one fill per ~180-byte
# frame (pinned to CPU 1); collector-bench on CPU 0 either counts the raw frames (`--raw`: the
# WebSocket receive alone) or parses every frame into trade events with the OKX adapter. Both on the
# same simulator, alternated REPS times. Goal: parsed >= 0.5 x raw (paired median of per-rep ratios).
#   cluster/bench/ws_trades.sh [MESSAGES] [REPS]
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
N=${1:-2000000}
REPS=${2:-3}
GOAL=0.5
bench_build collector-bench exchange-sim
B=$BUILD/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate_of() { sed -E 's/.*_per_sec=([0-9]+).*/\1/' <<<"$1"; }
bench_say "starting exchange-sim (flood of $N trade frames)…"
taskset -c 1 "$B/exchange-sim" --flood "$N" --no-rate-limits >"$WORK/sim" 2>&1 &
for _ in $(seq 50); do grep -q LISTENING "$WORK/sim" && break; sleep 0.1; done
port=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim")
url="ws://127.0.0.1:$port/ws/v5/business"
raws=() parsed=() ratios=()
for rep in $(seq "$REPS"); do
  bench_say "rep $rep of $REPS: raw, then parsed…"
  line=$(taskset -c 0 "$B/collector-bench" ws-parse --url "$url" --messages "$N" --feed trades --raw)
  echo "$line"
  r=$(rate_of "$line")
  line=$(taskset -c 0 "$B/collector-bench" ws-parse --url "$url" --messages "$N" --feed trades)
  echo "$line"
  p=$(rate_of "$line")
  raws+=("$r") parsed+=("$p") ratios+=("$(awk -v a="$p" -v b="$r" 'BEGIN {printf "%.2f", a / b}')")
done
mr=$(printf '%s\n' "${raws[@]}" | median)
mp=$(printf '%s\n' "${parsed[@]}" | median)
pr=$(printf '%s\n' "${ratios[@]}" | median)
echo "MEDIAN raw frames_per_sec=$mr parsed trades_per_sec=$mp (messages=$N reps=$REPS)"
echo "PAIRED ratios=${ratios[*]} median=$pr"
echo "GOAL parsed/raw paired ratio=$pr >= $GOAL $(awk -v r="$pr" -v g="$GOAL" 'BEGIN {print (r >= g ? "PASS" : "FAIL")}')"
