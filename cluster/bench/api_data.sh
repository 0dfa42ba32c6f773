#!/usr/bin/env bash
# Gateway data endpoint under load (issue 4): `GET /api/v1/data/S0-USDT/1m?limit=1000` with wrk,
# 32 connections, against the release coordinator and a throw-away PostgreSQL holding 1,000 bars per
# symbol. Prints wrk's requests/s and latency percentiles. Also: idle RSS with 100 symbols × 3
# timeframes subscribed (against exchange-sim).
#   cluster/bench/api_data.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-15}
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 1; }
swift build -c release --product coordinator >/dev/null
swift build -c release --product exchange-sim >/dev/null
swift build -c release --product collector-bench >/dev/null
WORK=$(mktemp -d /tmp/collector-bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  bash cluster/pg.sh stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(bash cluster/pg.sh start "$WORK/pg" 55497)"
# 100 symbols × 1,000 one-minute bars.
.build/release/collector-bench pg-upsert --conninfo "$DATABASE_URL" --rows 100000 --batch 10000 >/dev/null
.build/release/exchange-sim --bar-ms 60000 --symbol-count 100 >"$WORK/sim.out" 2>&1 &
for _ in $(seq 50); do grep -q LISTENING "$WORK/sim.out" && break; sleep 0.1; done
WS=$(sed -nE 's/.*ws=([0-9]+).*/\1/p' "$WORK/sim.out")
REST=$(sed -nE 's/.*rest=([0-9]+).*/\1/p' "$WORK/sim.out")
SYMS=$(seq -s, 0 99 | sed -E 's/([0-9]+)/SYM\1-USDT/g')
DATABASE_URL=$DATABASE_URL DATA_DIR="$WORK/data" OKX_WS_BUSINESS_URL="ws://127.0.0.1:$WS/ws/v5/business" \
  OKX_REST_URL="http://127.0.0.1:$REST" LOG_LEVEL=warning API_RATE_LIMIT=0 \
  .build/release/coordinator serve --standalone --http-port 18080 --markets "$SYMS" --timeframes 1m,5m,1H &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null localhost:18080/health && break; sleep 0.1; done
sleep 5
echo "idle RSS with 300 streams: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
rows=$(curl -s "localhost:18080/api/v1/data/S0-USDT/1m?limit=1000" | grep -o '"open_time"' | wc -l)
echo "rows per response: $rows"
wrk -t 2 -c 32 -d "${DURATION}s" --latency "http://127.0.0.1:18080/api/v1/data/S0-USDT/1m?limit=1000" | sed -n '1,20p'
