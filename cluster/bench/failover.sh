#!/usr/bin/env bash
# Failover in the deterministic simulation (issue 10): one worker of WORKERS dies; the simulated time
# until each of its shards is live on another worker, trades/candles/tickers and books reported
# apart. Goal: trades and candles <= lease_ttl + 1 s (lease 2 s: 3,000 ms).
# Two layouts: every worker its own egress group (nothing shared), then all behind one egress
# address (GROUPS=1 by default): the exchange's per-IP budget paces that group's failover.
#   cluster/bench/failover.sh [WORKERS] [SHARDS] [REPS] [GROUPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${COLLECTOR_BUILD_PATH:-.build}
WORKERS=${1:-20}
swift build -c release --scratch-path "$BUILD" --product collector-bench >/dev/null
for groups in "$WORKERS" "${4:-1}"; do
    "$BUILD/release/collector-bench" failover --workers "$WORKERS" --shards "${2:-2000}" --reps "${3:-5}" \
        --lease-ms 2000 --groups "$groups"
done
