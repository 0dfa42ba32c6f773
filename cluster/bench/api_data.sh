#!/usr/bin/env bash
# Gateway data endpoint under load (issue 4): `GET /api/v1/data/S0-USDT/1m?limit=1000` with wrk,
# 32 connections, against the release coordinator and a throw-away PostgreSQL holding 1,000 bars per
# symbol. Prints wrk's requests/s and latency percentiles. Also: idle RSS with 100 symbols × 3
# timeframes subscribed (against exchange-sim).
#   cluster/bench/api_data.sh [DURATION_SECONDS]
# Needs wrk (cluster/setup.sh installs it; or apt-get install wrk).
# Its database is always its own: a throw-away PostgreSQL started with cluster/pg.sh on port 55496 in a
# new mktemp directory, stopped and deleted on exit; an inherited DATABASE_URL is ignored.
# BENCH_DRY_RUN=1 prints that URL and exits. COLLECTOR_BUILD_PATH: SwiftPM scratch path (default
# .build). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database 55496
command -v wrk >/dev/null || bench_fail "wrk is not installed (cluster/setup.sh installs it, or apt-get install wrk)"
DURATION=${1:-15}
HTTP_PORT=18080
bench_build coordinator exchange-sim collector-bench
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
bench_say "storing 100 symbols × 1,000 one-minute bars…"
"$B/collector-bench" pg-upsert --conninfo "$DATABASE_URL" --rows 100000 --batch 10000 >/dev/null
bench_say "starting exchange-sim (100 symbols)…"
"$B/exchange-sim" --bar-ms 60000 --symbol-count 100 >"$WORK/sim.out" 2>&1 &
for _ in $(seq 50); do grep -q LISTENING "$WORK/sim.out" && break; sleep 0.1; done
grep -q LISTENING "$WORK/sim.out" || { cat "$WORK/sim.out" >&2; bench_fail "exchange-sim did not start"; }
WS=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.out")
REST=$(sed -nE 's/.*rest=([0-9]+).*/\1/p' "$WORK/sim.out")
SYMS=$(seq -s, 0 99 | sed -E 's/([0-9]+)/SYM\1-USDT/g')
bench_say "starting the coordinator on port $HTTP_PORT (100 symbols × 3 timeframes)…"
DATA_DIR="$WORK/data" OKX_WS_BUSINESS_URL="ws://127.0.0.1:$WS/ws/v5/business" \
  OKX_REST_URL="http://127.0.0.1:$REST" LOG_LEVEL=warning API_RATE_LIMIT=0 \
  "$B/coordinator" serve --standalone --http-port "$HTTP_PORT" --markets "$SYMS" --timeframes 1m,5m,1H &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "localhost:$HTTP_PORT/health" && break; sleep 0.1; done
bench_say "letting it settle for 5 s…"
sleep 5
echo "idle RSS with 300 streams: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
rows=$(curl -s "localhost:$HTTP_PORT/api/v1/data/S0-USDT/1m?limit=1000" | grep -o '"open_time"' | wc -l)
echo "rows per response: $rows"
bench_say "wrk: 2 threads, 32 connections, ${DURATION} s…"
wrk -t 2 -c 32 -d "${DURATION}s" --latency "http://127.0.0.1:$HTTP_PORT/api/v1/data/S0-USDT/1m?limit=1000" | sed -n '1,20p'
