#!/usr/bin/env bash
# Failover in the deterministic simulation (issue 10): one worker of WORKERS dies; the simulated time
# until each of its shards is live on another worker, trades/candles/tickers and books reported
# apart. Goal: trades and candles <= lease_ttl + 1 s (lease 2 s: 3,000 ms).
#   cluster/bench/failover.sh [WORKERS] [SHARDS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${COLLECTOR_BUILD_PATH:-.build}
swift build -c release --scratch-path "$BUILD" --product collector-bench >/dev/null
"$BUILD/release/collector-bench" failover --workers "${1:-20}" --shards "${2:-2000}" --reps "${3:-5}" --lease-ms 2000
