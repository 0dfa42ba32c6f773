#!/usr/bin/env bash
# OKX candle-message parsing on one core (release build), against Foundation's JSONDecoder on the
# same messages in the same run (issue 3). Prints the median of REPS.
#   cluster/bench/parse_okx.sh [MESSAGES] [REPS]
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
bench_build collector-bench
bench_say "parse-okx: ${1:-2000000} messages, ${2:-3} reps (CPU 0)…"
taskset -c 0 "$BUILD/release/collector-bench" parse-okx --messages "${1:-2000000}" --reps "${2:-3}"
