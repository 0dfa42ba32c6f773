#!/usr/bin/env bash
# RSS of the whole collector process with 1,000 OKX `books` streams (400 levels each) live (issue 9):
# exchange-sim serves 1,000 symbols (one book step per 100 ms of real time: --bar-ms 60000), the
# release coordinator collects `book` for all of them into a throw-away PostgreSQL; once every
# stream is live and has stored rows, VmRSS is read from /proc. Goal: <= 150 MB.
#   cluster/bench/book_rss.sh [SETTLE_SECONDS]
# Its database is always its own: a throw-away PostgreSQL started with cluster/pg.sh on port 55498 in a
# new mktemp directory, stopped and deleted on exit; an inherited DATABASE_URL is ignored.
# BENCH_DRY_RUN=1 prints that URL and exits. COLLECTOR_BUILD_PATH: SwiftPM scratch path (default
# .build). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database 55498
SETTLE=${1:-20}
BOOKS=1000
HTTP_PORT=18081
bench_build coordinator exchange-sim
B=$BUILD/release
WORK=$(mktemp -d /tmp/collector-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  bench_stop_database
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_start_database "$WORK/pg"
bench_say "starting exchange-sim ($BOOKS symbols)…"
"$B/exchange-sim" --bar-ms 60000 --symbol-count "$BOOKS" --no-rate-limits >"$WORK/sim.out" 2>&1 &
for _ in $(seq 100); do grep -q LISTENING "$WORK/sim.out" && break; sleep 0.1; done
grep -q LISTENING "$WORK/sim.out" || { cat "$WORK/sim.out" >&2; bench_fail "exchange-sim did not start"; }
WS=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.out")
REST=$(sed -nE 's/.*rest=([0-9]+).*/\1/p' "$WORK/sim.out")
SYMS=$(seq -s, 0 $((BOOKS - 1)) | sed -E 's/([0-9]+)/"SYM\1-USDT"/g')
printf '[[markets]]\nsymbols = [%s]\nfeeds = ["book"]\n' "$SYMS" >"$WORK/collector.toml"
bench_say "starting the coordinator on port $HTTP_PORT ($BOOKS book streams)…"
DATA_DIR="$WORK/data" OKX_WS_PUBLIC_URL="ws://127.0.0.1:$WS/ws/v5/public" \
  OKX_WS_BUSINESS_URL="ws://127.0.0.1:$WS/ws/v5/business" OKX_REST_URL="http://127.0.0.1:$REST" \
  LOG_LEVEL=warning "$B/coordinator" serve --standalone --http-port "$HTTP_PORT" --config "$WORK/collector.toml" &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "localhost:$HTTP_PORT/health" && break; sleep 0.1; done
bench_say "waiting until every book stream is live (at most 120 s)…"
live=0
for _ in $(seq 120); do
  live=$(curl -s "localhost:$HTTP_PORT/metrics" | awk '/^collector_streams\{exchange="okx",feed="book",state="live"\}/ {print int($2)}')
  [ "${live:-0}" -ge "$BOOKS" ] && break
  sleep 1
done
echo "live book streams: ${live:-0} of $BOOKS"
bench_say "settling for $SETTLE s…"
sleep "$SETTLE"
stored=$(psql "$DATABASE_URL" -Atc "SELECT count(DISTINCT symbol) || ' symbols, ' || count(*) || ' rows' FROM book_messages")
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
echo "stored: $stored"
echo "RESULT mode=book-rss books=$BOOKS rss_mb=$((rss / 1024))"
echo "GOAL rss_mb=$((rss / 1024)) <= 150 $([ $((rss / 1024)) -le 150 ] && echo PASS || echo FAIL)"
