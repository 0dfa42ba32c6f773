#!/usr/bin/env bash
# The run command: collects OKX candles (and, with no options given, BTC-USDT trades, order books and tickers)
# into a throw-away PostgreSQL and shows what landed.
#   cluster/run.sh                 offline: against exchange-sim (a 1m bar every second), for 20 s
#   cluster/run.sh --live          against the real OKX endpoints (needs internet)
#   cluster/run.sh --seconds N     collect for N seconds (default 20); --seconds 0 runs until Ctrl-C
#   cluster/run.sh --help          prints this text
# Options after `--` go to `coordinator serve --standalone` (e.g. -- --markets BTC-USDT --timeframes 1m,1H).
# Progress lines ("run.sh: …") go to stderr. The setup's and the build's output is kept in a log whose
# end is shown if that step fails. Environment: SWIFT (the swift binary, default swift),
# COLLECTOR_BUILD_PATH (SwiftPM scratch path, default .build), PG_PORT (the throw-away server's port,
# default 55444), SKIP_SETUP=1 (do not run cluster/setup.sh).
# Exit codes: 0 done; 1 a step failed (setup, build, PostgreSQL, exchange-sim, the collector); 64 usage error.
set -euo pipefail

say() { echo "run.sh: $*" >&2; }
usage() {
  local line
  {
    read -r line
    while IFS= read -r line && [[ $line == '#'* ]]; do
      line=${line#'#'}
      printf '%s\n' "${line# }"
    done
  } <"${BASH_SOURCE[0]}"
}
usage_error() {
  say "$1"
  exit 64
}

LIVE=0
SECONDS_TO_RUN=20
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --live) LIVE=1 ;;
    --seconds | --seconds=*)
      if [[ $1 == --seconds=* ]]; then value=${1#--seconds=}; else value=${2:-}; shift || true; fi
      [[ $value =~ ^[0-9]+$ ]] || usage_error "--seconds needs a number of seconds"
      SECONDS_TO_RUN=$((10#$value))
      ;;
    --) shift; break ;;
    *) usage_error "unknown option '$1' (cluster/run.sh --help shows the usage)" ;;
  esac
  shift
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SWIFT=${SWIFT:-swift}
BUILD=${COLLECTOR_BUILD_PATH:-.build}
B=$BUILD/release

WORK=$(mktemp -d /tmp/collector-run.XXXXXX)
chmod 755 "$WORK"
PG_STARTED=0
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  [ "$PG_STARTED" = 1 ] && { bash cluster/pg.sh stop "$WORK/pg" >/dev/null 2>&1 || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# step WHAT LOG COMMAND…: runs COMMAND with its output in LOG; on failure shows LOG's end and exits 1.
step() {
  local what=$1 log=$2
  shift 2
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "$what failed (the whole output: $log)"
    exit 1
  fi
}

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  say "checking the system packages (cluster/setup.sh)…"
  SETUP_LOG=$(mktemp "${TMPDIR:-/tmp}/collector-run-setup.XXXXXX")
  step "the setup" "$SETUP_LOG" bash cluster/setup.sh
  rm -f "$SETUP_LOG"
fi

say "building (release)…"
BUILD_LOG=$(mktemp "${TMPDIR:-/tmp}/collector-run-build.XXXXXX")
PRODUCTS=(coordinator)
[ "$LIVE" = 0 ] && PRODUCTS+=(exchange-sim)
for product in "${PRODUCTS[@]}"; do
  step "the build" "$BUILD_LOG" "$SWIFT" build -c release --scratch-path "$BUILD" --product "$product"
done
rm -f "$BUILD_LOG"

say "starting PostgreSQL…"
PG_STARTED=1
PG_LINE=$(bash cluster/pg.sh start "$WORK/pg" "${PG_PORT:-55444}") || { say "PostgreSQL did not start"; exit 1; }
eval "$PG_LINE"
export DATABASE_URL DATA_DIR="$WORK/data" BATCH_TIMEOUT=${BATCH_TIMEOUT:-0.5}

if [ "$LIVE" = 0 ]; then
  say "starting exchange-sim…"
  "$B/exchange-sim" --bar-ms 1000 --updates-per-bar 4 >"$WORK/sim.out" 2>&1 &
  SIM=$!
  for _ in $(seq 100); do
    grep -q LISTENING "$WORK/sim.out" && break
    kill -0 "$SIM" 2>/dev/null || break
    sleep 0.1
  done
  grep -q LISTENING "$WORK/sim.out" || { cat "$WORK/sim.out" >&2; say "exchange-sim did not start"; exit 1; }
  WS=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.out")
  REST=$(sed -nE 's/.*rest=([0-9]+).*/\1/p' "$WORK/sim.out")
  export OKX_WS_BUSINESS_URL="ws://127.0.0.1:$WS/ws/v5/business" OKX_WS_PUBLIC_URL="ws://127.0.0.1:$WS/ws/v5/public"
  export OKX_REST_URL="http://127.0.0.1:$REST"
  echo "exchange-sim on ws://127.0.0.1:$WS (REST :$REST); PostgreSQL at $DATABASE_URL"
else
  echo "live OKX; PostgreSQL at $DATABASE_URL"
fi

EXTRA=("$@")
if [ $# -eq 0 ]; then
  # Trades (one row per fill), the 400-level book, the top 5 and tickers beside the candles of --markets.
  printf '[[markets]]\nsymbols = ["BTC-USDT"]\nfeeds = ["trades", "book", "book:5", "ticker"]\n' >"$WORK/collector.toml"
  EXTRA=(--config "$WORK/collector.toml")
fi
if [ "$SECONDS_TO_RUN" -gt 0 ]; then
  say "collecting for $SECONDS_TO_RUN s…"
else
  say "collecting until Ctrl-C…"
fi
"$B/coordinator" serve --standalone --markets BTC-USDT,ETH-USDT "${EXTRA[@]}" &
COLLECTOR=$!
if [ "$SECONDS_TO_RUN" -gt 0 ]; then
  # Sleep in the background and wait for either, so a collector that exits early ends the run early.
  sleep "$SECONDS_TO_RUN" &
  TIMER=$!
  wait -n "$COLLECTOR" "$TIMER" || true
  if kill -0 "$COLLECTOR" 2>/dev/null; then
    say "stopping the collector…"
    kill -TERM "$COLLECTOR"
  fi
  kill "$TIMER" 2>/dev/null || true
fi
STATUS=0
wait "$COLLECTOR" || STATUS=$?
[ "$STATUS" = 0 ] || { say "the collector exited with status $STATUS"; exit 1; }
say "what was stored:"
echo
echo "stored candles:"
psql "$DATABASE_URL" -c "SELECT exchange, symbol, timeframe, count(*) AS bars, count(*) FILTER (WHERE confirmed) AS confirmed,
  min(open_time) AS first, max(open_time) AS last FROM candles GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
echo "stored trades and tickers:"
psql "$DATABASE_URL" -c "SELECT 'trades' AS feed, symbol, count(*) AS rows, min(trade_id::bigint)::text AS first_id,
  max(trade_id::bigint)::text AS last_id, (max(trade_id::bigint) - min(trade_id::bigint) + 1 = count(*)) AS no_missing_id
  FROM trades GROUP BY symbol
  UNION ALL SELECT 'ticker', symbol, count(*), NULL, NULL, NULL FROM tickers GROUP BY symbol ORDER BY 1, 2"
echo "stored order books and the gap ledger:"
psql "$DATABASE_URL" -c "SELECT symbol, CASE depth WHEN 0 THEN 'book' ELSE 'book:' || depth END AS feed,
  count(*) FILTER (WHERE action = 'snapshot') AS snapshots, count(*) FILTER (WHERE action = 'update') AS updates,
  max(seq) AS last_seq FROM book_messages GROUP BY 1, 2 ORDER BY 1, 2"
psql "$DATABASE_URL" -c "SELECT symbol, feed, cause, from_time, to_time, missing, recovered FROM gaps ORDER BY from_time"
