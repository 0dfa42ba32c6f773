#!/usr/bin/env bash
# The run command: collects OKX candles (and, with no options given, BTC-USDT trades, order books and tickers)
# into a throw-away PostgreSQL and shows what landed.
#   cluster/run.sh                 offline: against exchange-sim (a 1m bar every second), for 20 s
#   cluster/run.sh --live          against the real OKX endpoints (needs internet)
#   cluster/run.sh --seconds 0     run until Ctrl-C
# Options after `--` go to `coordinator serve --standalone` (e.g. -- --markets BTC-USDT --timeframes 1m,1H).
set -euo pipefail
cd "$(dirname "$0")/.."
LIVE=0
SECONDS_TO_RUN=20
while [ $# -gt 0 ]; do
  case "$1" in
    --live) LIVE=1 ;;
    --seconds) SECONDS_TO_RUN=$2; shift ;;
    --) shift; break ;;
    *) echo "usage: cluster/run.sh [--live] [--seconds N] [-- coordinator options]" >&2; exit 64 ;;
  esac
  shift
done

bash cluster/setup.sh >/dev/null
swift build -c release --product coordinator >/dev/null
swift build -c release --product exchange-sim >/dev/null

WORK=$(mktemp -d /tmp/collector-run.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  bash cluster/pg.sh stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(bash cluster/pg.sh start "$WORK/pg" "${PG_PORT:-55444}")"
export DATABASE_URL DATA_DIR="$WORK/data" BATCH_TIMEOUT=${BATCH_TIMEOUT:-0.5}

if [ "$LIVE" = 0 ]; then
  .build/release/exchange-sim --bar-ms 1000 --updates-per-bar 4 >"$WORK/sim.out" 2>&1 &
  for _ in $(seq 50); do grep -q LISTENING "$WORK/sim.out" && break; sleep 0.1; done
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
.build/release/coordinator serve --standalone --markets BTC-USDT,ETH-USDT "${EXTRA[@]}" &
COLLECTOR=$!
if [ "$SECONDS_TO_RUN" -gt 0 ]; then
  sleep "$SECONDS_TO_RUN"
  kill -TERM "$COLLECTOR"
fi
wait "$COLLECTOR"
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
