#!/usr/bin/env bash
# OKX `books` (issue 9): updates parsed, sequenced, applied and checksum-verified by the collector's
# session machine on one core (CPU 0), from pre-encoded frames of a generated 400-level book whose
# checksums a generator-side OrderBook computed; and the memory 1,000 live 400-level books take.
# Goals: >= 300,000 updates/s; <= 150 MB for 1,000 books.
#   cluster/bench/book_sync.sh [MESSAGES] [REPS]
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
N=${1:-1000000}
REPS=${2:-3}
bench_build collector-bench
bench_say "book-sync: $N messages, $REPS reps, 1,000 books (CPU 0)…"
taskset -c 0 "$BUILD/release/collector-bench" book-sync --messages "$N" --reps "$REPS" --books 1000
