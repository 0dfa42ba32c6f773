#!/usr/bin/env bash
# Our OKX trade parsing beside cryptofeed's, in the same run (issue 9): the peer benchmark's mock
# exchange (../shared/peer-bench/mock_exchange.py: pre-encoded ~180-byte OKX `trades` pushes, one
# fill each) feeds cryptofeed's real OKX handler (websockets → JSON → Trade → callback) and picows
# counting raw frames (the Python upper bound); exchange-sim floods the same-shaped `trades-all`
# pushes to collector-bench (WebSocket → parsed trade events). Servers on CPU 1, clients on CPU 0.
#   cluster/bench/peer_trades.sh [MESSAGES] [REPS]
# Needs PyPI once: a venv .bench-venv with ../shared/peer-bench/requirements.txt (made here).
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
N=${1:-200000}
REPS=${2:-3}
PEER=../shared/peer-bench
[ -d "$PEER" ] || bench_fail "$PEER not found"
if [ ! -x .bench-venv/bin/python ] || ! .bench-venv/bin/python -c "import cryptofeed, picows" 2>/dev/null; then
  bench_say "making .bench-venv (cryptofeed, picows from PyPI)…"
  python3 -m venv .bench-venv
  .bench-venv/bin/pip install -q -r "$PEER/requirements.txt"
fi
bench_build collector-bench exchange-sim
B=$BUILD/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
msgs_of() { sed -nE 's/.*"msgs_per_s": ([0-9.]+).*/\1/p' <<<"$1" | cut -d. -f1; }
ours=() cf=() raw=()
for rep in $(seq "$REPS"); do
  bench_say "rep $rep of $REPS: ours, cryptofeed, picows…"
  taskset -c 1 "$B/exchange-sim" --flood "$N" --no-rate-limits >"$WORK/sim" 2>&1 &
  sim=$!
  for _ in $(seq 50); do grep -q LISTENING "$WORK/sim" && break; sleep 0.1; done
  port=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim")
  line=$(taskset -c 0 "$B/collector-bench" ws-parse --url "ws://127.0.0.1:$port/ws/v5/business" --messages "$N" --feed trades)
  echo "ours: $line"
  ours+=("$(sed -E 's/.*_per_sec=([0-9]+).*/\1/' <<<"$line")")
  kill "$sim"; wait "$sim" 2>/dev/null || true
  for peer in cryptofeed picows; do
    taskset -c 1 .bench-venv/bin/python "$PEER/mock_exchange.py" --port 0 --n "$N" --quiet >"$WORK/mock" 2>&1 &
    mock=$!
    for _ in $(seq 100); do grep -q LISTENING "$WORK/mock" && break; sleep 0.1; done
    url=$(sed -nE 's/^LISTENING ([^ ]+).*/\1/p' "$WORK/mock")
    if [ "$peer" = cryptofeed ]; then
      line=$(taskset -c 0 .bench-venv/bin/python "$PEER/peer_cryptofeed.py" --url "$url" --n "$N" | grep RESULT)
      echo "cryptofeed: $line"
      cf+=("$(msgs_of "$line")")
    else
      line=$(taskset -c 0 .bench-venv/bin/python "$PEER/peer_picows_raw.py" --url "$url" --n "$N" | grep RESULT)
      echo "picows raw: $line"
      raw+=("$(msgs_of "$line")")
    fi
    kill "$mock"; wait "$mock" 2>/dev/null || true
  done
done
mo=$(printf '%s\n' "${ours[@]}" | median)
mc=$(printf '%s\n' "${cf[@]}" | median)
mr=$(printf '%s\n' "${raw[@]}" | median)
echo "MEDIAN ours parsed trades_per_sec=$mo cryptofeed trades_per_sec=$mc picows_raw frames_per_sec=$mr (messages=$N reps=$REPS)"
echo "RATIO ours/cryptofeed=$(awk -v a="$mo" -v b="$mc" 'BEGIN {printf "%.1f", a / b}')"
