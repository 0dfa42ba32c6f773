#!/usr/bin/env bash
# PostgreSQL candle writes (issue 3): ROWS distinct keys written through PostgresSink (COPY straight
# into the table inside a savepoint; rewrites through a staging table + one upsert) versus a plain
# `psql \copy` of the same rows into the same (truncated) table, and the same keys written again when
# every one is already stored. Durable settings (fsync=on, synchronous_commit=on), one server,
# partitions made before anything is timed, a CHECKPOINT before each timed run.
#   cluster/bench/pg_upsert.sh [ROWS] [BATCH] [REPS]
# Its database is always its own: a throw-away PostgreSQL started with cluster/pg.sh on port 55499 in a
# new mktemp directory, stopped and deleted on exit; an inherited DATABASE_URL is ignored (this script
# truncates `candles`). BENCH_DRY_RUN=1 prints that URL and exits. --help prints this text.
# Each rep runs, back to back: new keys (ours), psql \copy, existing keys (ours, unchanged rows: the
# table psql just loaded), and "revise" (same keys, later collector time: every row really updated;
# for information, no goal). MEDIAN: the medians of each side and their ratio. PAIRED: the median of
# the per-rep ratios to that rep's psql run, which a shared machine's drifting speed (runs minutes
# apart can differ by 2x) does not bias; the goals are judged on it.
# Goals: new keys >= 0.6 x psql \copy, existing keys >= 0.3 x psql \copy (both at batch 1000).
# new and existing run two ways: "direct" (each BATCH-event write its own transaction: the live path,
# where the sink only has to keep up) and "-backlog" (the batches wait in a spool and the dispatcher
# drains it from disk, joining them up to PER_WRITE events per transaction: how fast a sink catches up
# after an outage, the figure throughput matters for). The goals are judged on the backlog runs.
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build). Progress lines go to stderr.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database 55499
ROWS=${1:-1000000}
BATCH=${2:-10000}
REPS=${3:-3}
NEW_GOAL=0.6
EXISTING_GOAL=0.3
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
verdict() { awk -v r="$1" -v g="$2" 'BEGIN {print (r >= g ? "PASS" : "FAIL")}'; }
if psql "$DATABASE_URL" -qAt -c "CHECKPOINT" >/dev/null 2>&1; then
  checkpoint() { sql "CHECKPOINT" >/dev/null; }
else
  echo "NOTE no CHECKPOINT privilege (GRANT pg_checkpoint): runs start without a checkpoint" >&2
  checkpoint() { :; }
fi
# Same content on both sides: row count and a hash over every row's text.
fingerprint() { sql "SELECT count(*) || ':' || sum(hashtext(c::text)::bigint) FROM candles c"; }
B=$BUILD/release/collector-bench
ours() { $B pg-upsert --conninfo "$DATABASE_URL" --rows "$ROWS" --batch "$BATCH" "$@"; }
# Writes the baseline file; also migrates and creates the partitions the rows fall in.
bench_say "writing the $ROWS-row baseline file (migrates, makes the partitions)…"
$B pg-upsert --conninfo "$DATABASE_URL" --rows "$ROWS" --write-copy-file "$WORK/rows.copy" >/dev/null
cols="exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, confirmed, timestamp_exchange, timestamp_collector"
new=() existing=() revised=() copies=() new_paired=() existing_paired=() revised_paired=()
new_backlog=() existing_backlog=() new_backlog_paired=() existing_backlog_paired=()
for rep in $(seq "$REPS"); do
  bench_say "rep $rep of $REPS: new keys (direct, then backlog)…"
  checkpoint  # new keys: the benchmark truncates `candles` itself before it starts the clock
  line=$(ours)
  echo "$line"
  n=$(rate_of "$line")
  [ "$rep" = 1 ] && ours_print=$(fingerprint)
  checkpoint
  line=$(ours --backlog --per-write "$PER_WRITE")
  echo "$line"
  nb=$(rate_of "$line")
  [ "$rep" = 1 ] && backlog_print=$(fingerprint)
  bench_say "rep $rep of $REPS: psql \\copy…"
  sql "TRUNCATE candles" >/dev/null
  checkpoint
  start=$(date +%s.%N)
  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "\\copy candles ($cols) FROM '$WORK/rows.copy'" >/dev/null
  end=$(date +%s.%N)
  c=$(awk -v r="$ROWS" -v s="$start" -v e="$end" 'BEGIN {printf "%d", r / (e - s)}')
  echo "RESULT mode=psql-copy rows=$ROWS seconds=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}') rows_per_sec=$c"
  [ "$rep" = 1 ] && copy_print=$(fingerprint)
  bench_say "rep $rep of $REPS: existing keys (direct, then backlog), then revise…"
  checkpoint  # existing keys: every row psql just stored, written again unchanged
  line=$(ours --existing)
  echo "$line"
  e=$(rate_of "$line")
  checkpoint
  line=$(ours --existing --backlog --per-write "$PER_WRITE")
  echo "$line"
  eb=$(rate_of "$line")
  checkpoint
  line=$(ours --revise)
  echo "$line"
  r=$(rate_of "$line")
  new+=("$n") existing+=("$e") revised+=("$r") copies+=("$c") new_backlog+=("$nb") existing_backlog+=("$eb")
  new_backlog_paired+=("$(ratio "$nb" "$c")") existing_backlog_paired+=("$(ratio "$eb" "$c")")
  new_paired+=("$(ratio "$n" "$c")") existing_paired+=("$(ratio "$e" "$c")") revised_paired+=("$(ratio "$r" "$c")")
done
if [ "$ours_print" = "$copy_print" ] && [ "$backlog_print" = "$copy_print" ]; then
  echo "CHECK same rows both sides ($ours_print)"
else
  echo "CHECK FAIL rows differ: ours $ours_print, backlog $backlog_print, psql $copy_print"
  exit 1
fi
mc=$(printf '%s\n' "${copies[@]}" | median)
for kind in new new_backlog existing existing_backlog revised; do
  declare -n rates=$kind pairs=${kind}_paired
  m=$(printf '%s\n' "${rates[@]}" | median)
  echo "MEDIAN $kind rows_per_sec=$m psql_copy rows_per_sec=$mc ratio=$(ratio "$m" "$mc") (rows=$ROWS batch=$BATCH reps=$REPS)"
  echo "PAIRED $kind ratios=${pairs[*]} median=$(printf '%s\n' "${pairs[@]}" | median)"
done
np=$(printf '%s\n' "${new_backlog_paired[@]}" | median)
ep=$(printf '%s\n' "${existing_backlog_paired[@]}" | median)
echo "GOAL new-keys (backlog, per_write=$PER_WRITE) paired ratio=$np >= $NEW_GOAL $(verdict "$np" "$NEW_GOAL")"
echo "GOAL existing-keys (backlog, per_write=$PER_WRITE) paired ratio=$ep >= $EXISTING_GOAL $(verdict "$ep" "$EXISTING_GOAL")"
