#!/usr/bin/env bash
# Failover in the deterministic simulation (issue 10): one worker of WORKERS dies; the simulated time
# until each of its shards is live on another worker, trades/candles/tickers and books reported
# apart. Goal: trades and candles <= lease_ttl + 1 s (lease 2 s: 3,000 ms).
# Two layouts: every worker its own egress group (nothing shared), then all behind one egress
# address (GROUPS=1 by default): the exchange's per-IP budget paces that group's failover.
#   cluster/bench/failover.sh [WORKERS] [SHARDS] [REPS] [GROUPS]
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
WORKERS=${1:-20}
bench_build collector-bench
for groups in "$WORKERS" "${4:-1}"; do
    bench_say "failover: $WORKERS workers in $groups egress group(s)…"
    "$BUILD/release/collector-bench" failover --workers "$WORKERS" --shards "${2:-2000}" --reps "${3:-5}" \
        --lease-ms 2000 --groups "$groups"
done
