#!/usr/bin/env bash
# OKX `books` (issue 9): updates parsed, sequenced, applied and checksum-verified by the collector's
# session machine on one core (CPU 0), from pre-encoded frames of a generated 400-level book whose
# checksums a generator-side OrderBook computed; and the memory 1,000 live 400-level books take.
# Goals: >= 300,000 updates/s; <= 150 MB for 1,000 books.
#   cluster/bench/book_sync.sh [MESSAGES] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
REPS=${2:-3}
BUILD=${COLLECTOR_BUILD_PATH:-.build}
swift build -c release --scratch-path "$BUILD" --product collector-bench >/dev/null
taskset -c 0 "$BUILD/release/collector-bench" book-sync --messages "$N" --reps "$REPS" --books 1000
