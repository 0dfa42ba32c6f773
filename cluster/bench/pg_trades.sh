#!/usr/bin/env bash
# PostgreSQL trade writes (issue 3): ROWS new trades written through PostgresSink alone (no WebSocket;
# BATCH events per write, one transaction each: COPY straight into `trades` inside a savepoint plus the
# stream watermarks) versus a plain `psql \copy` of the same rows (PostgresSink.tradeCopyText) into the
# same truncated table. Same server, durable settings (fsync=on, synchronous_commit=on); partitions
# exist before either side is timed; a CHECKPOINT before each timed run.
#   cluster/bench/pg_trades.sh [ROWS] [BATCH] [REPS]
# Its database is always its own: a throw-away PostgreSQL started with cluster/pg.sh on port 55497 in a
# new mktemp directory, stopped and deleted on exit; an inherited DATABASE_URL is ignored (this script
# truncates `trades`). BENCH_DRY_RUN=1 prints that URL and exits. --help prints this text.
# Each rep runs ours then psql back to back. MEDIAN: the medians of each side and their ratio. PAIRED:
# the median of the per-rep ratios, which a shared machine's drifting speed (runs minutes apart can
# differ by 2x) does not bias; the goal is judged on it. Goal: ours >= 0.85 x psql \copy.
# Two ways of ours per rep: "direct" (each BATCH-event write its own transaction: the live path, where
# the sink only has to keep up) and "backlog" (the batches wait in a spool and the dispatcher drains
# it from disk, joining them up to PER_WRITE events per transaction, reading and decoding the next
# group while the sink writes: how fast a sink catches up after an outage, for information). The goal,
# "our COPY path against psql \copy", is judged on direct.
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build). Progress lines go to stderr.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database 55497
ROWS=${1:-1000000}
BATCH=${2:-10000}
REPS=${3:-3}
GOAL=0.85
PER_WRITE=${PER_WRITE:-10000}
bench_build collector-bench
WORK=$(mktemp -d)
chmod 755 "$WORK"
cleanup() {
  bench_stop_database
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_start_database "$WORK/pg"
# pg.sh's server trusts local connections: let the benchmark role run CHECKPOINT.
psql "postgresql://postgres@127.0.0.1:$BENCH_PG_PORT/collector" -qAt -c "GRANT pg_checkpoint TO collector" >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sql() { psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "$1"; }
rate_of() { sed -E 's/.*rows_per_sec=([0-9]+).*/\1/' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
if psql "$DATABASE_URL" -qAt -c "CHECKPOINT" >/dev/null 2>&1; then
  checkpoint() { sql "CHECKPOINT" >/dev/null; }
else
  echo "NOTE no CHECKPOINT privilege (GRANT pg_checkpoint): runs start without a checkpoint" >&2
  checkpoint() { :; }
fi
# Same content on both sides: row count and a hash over every row's text.
fingerprint() { sql "SELECT count(*) || ':' || sum(hashtext(t::text)::bigint) FROM trades t"; }
B=$BUILD/release/collector-bench
# Writes the baseline file; also migrates and creates the partitions the rows fall in.
bench_say "writing the $ROWS-row baseline file (migrates, makes the partitions)…"
$B pg-trades --conninfo "$DATABASE_URL" --rows "$ROWS" --write-copy-file "$WORK/trades.copy" >/dev/null
cols="exchange, symbol, trade_id, price, size, side, timestamp_exchange, timestamp_collector"
ours=()
backlogs=()
copies=()
paired=()
backlog_paired=()
for rep in $(seq "$REPS"); do
  bench_say "rep $rep of $REPS: ours (direct, then backlog)…"
  checkpoint  # the benchmark truncates `trades` itself before it starts the clock
  line=$($B pg-trades --conninfo "$DATABASE_URL" --rows "$ROWS" --batch "$BATCH")
  echo "$line"
  rate=$(rate_of "$line")
  ours+=("$rate")
  [ "$rep" = 1 ] && ours_print=$(fingerprint)
  checkpoint
  line=$($B pg-trades --conninfo "$DATABASE_URL" --rows "$ROWS" --batch "$BATCH" --backlog --per-write "$PER_WRITE")
  echo "$line"
  backlog=$(rate_of "$line")
  backlogs+=("$backlog")
  [ "$rep" = 1 ] && backlog_print=$(fingerprint)
  bench_say "rep $rep of $REPS: psql \\copy…"
  sql "TRUNCATE trades" >/dev/null
  checkpoint
  start=$(date +%s.%N)
  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "\\copy trades ($cols) FROM '$WORK/trades.copy'" >/dev/null
  end=$(date +%s.%N)
  copy=$(awk -v r="$ROWS" -v s="$start" -v e="$end" 'BEGIN {printf "%d", r / (e - s)}')
  echo "RESULT mode=psql-copy rows=$ROWS seconds=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}') rows_per_sec=$copy"
  copies+=("$copy")
  paired+=("$(ratio "$rate" "$copy")")
  backlog_paired+=("$(ratio "$backlog" "$copy")")
  [ "$rep" = 1 ] && copy_print=$(fingerprint)
done
if [ "$ours_print" = "$copy_print" ] && [ "$backlog_print" = "$copy_print" ]; then
  echo "CHECK same rows both sides ($ours_print)"
else
  echo "CHECK FAIL rows differ: ours $ours_print, backlog $backlog_print, psql $copy_print"
  exit 1
fi
mc=$(printf '%s\n' "${copies[@]}" | median)
mo=$(printf '%s\n' "${ours[@]}" | median)
mb=$(printf '%s\n' "${backlogs[@]}" | median)
mp=$(printf '%s\n' "${paired[@]}" | median)
bp=$(printf '%s\n' "${backlog_paired[@]}" | median)
echo "MEDIAN trades-direct rows_per_sec=$mo psql_copy rows_per_sec=$mc ratio=$(ratio "$mo" "$mc") (rows=$ROWS batch=$BATCH reps=$REPS)"
echo "MEDIAN trades-backlog rows_per_sec=$mb psql_copy rows_per_sec=$mc ratio=$(ratio "$mb" "$mc") (per_write=$PER_WRITE)"
echo "PAIRED trades-direct ratios=${paired[*]} median=$mp"
echo "PAIRED trades-backlog ratios=${backlog_paired[*]} median=$bp"
echo "GOAL trades (direct, batch=$BATCH) paired ratio=$mp >= $GOAL $(awk -v r="$mp" -v g="$GOAL" 'BEGIN {print (r >= g ? "PASS" : "FAIL")}')"
