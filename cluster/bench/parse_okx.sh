#!/usr/bin/env bash
# OKX candle-message parsing on one core (release build), against Foundation's JSONDecoder on the
# same messages in the same run (issue 3). Prints the median of REPS.
#   cluster/bench/parse_okx.sh [MESSAGES] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product collector-bench >/dev/null
taskset -c 0 .build/release/collector-bench parse-okx --messages "${1:-2000000}" --reps "${2:-3}"
