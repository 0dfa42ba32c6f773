#!/usr/bin/env bash
# PostgreSQL trade writes (issue 3): ROWS new trades written through PostgresSink alone (no WebSocket;
# BATCH events per write, one transaction each: COPY straight into `trades` inside a savepoint plus the
# stream watermarks) versus a plain `psql \copy` of the same rows (PostgresSink.tradeCopyText) into the
# same truncated table. Same server, durable settings (fsync=on, synchronous_commit=on); partitions
# exist before either side is timed; a CHECKPOINT before each timed run.
#   cluster/bench/pg_trades.sh [ROWS] [BATCH] [REPS]      (uses $DATABASE_URL, else a throw-away server)
# Each rep runs ours then psql back to back. MEDIAN: the medians of each side and their ratio. PAIRED:
# the median of the per-rep ratios, which a shared machine's drifting speed (runs minutes apart can
# differ by 2x) does not bias; the goal is judged on it. Goal: ours >= 0.85 x psql \copy.
# Two ways of ours per rep: "direct" (each BATCH-event write its own transaction: the live path, where
# the sink only has to keep up) and "backlog" (the batches wait in a spool and the dispatcher drains
# it from disk, joining them up to PER_WRITE events per transaction, reading and decoding the next
# group while the sink writes: how fast a sink catches up after an outage, for information). The goal,
# "our COPY path against psql \copy", is judged on direct.
# COLLECTOR_BUILD_PATH: SwiftPM scratch path (default .build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-1000000}
BATCH=${2:-10000}
REPS=${3:-3}
BUILD=${COLLECTOR_BUILD_PATH:-.build}
GOAL=0.85
PER_WRITE=${PER_WRITE:-10000}
swift build -c release --scratch-path "$BUILD" --product collector-bench >/dev/null
WORK=$(mktemp -d)
chmod 755 "$WORK"
cleanup() {
  [ -n "${OWN_PG:-}" ] && bash cluster/pg.sh stop "$WORK/pg" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${DATABASE_URL:-}" ]; then
  OWN_PG=1
  eval "$(bash cluster/pg.sh start "$WORK/pg" 55497)"
  # pg.sh's server trusts local connections: let the benchmark role run CHECKPOINT.
  psql "postgresql://postgres@127.0.0.1:55497/collector" -qAt -c "GRANT pg_checkpoint TO collector" >/dev/null
fi
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
$B pg-trades --conninfo "$DATABASE_URL" --rows "$ROWS" --write-copy-file "$WORK/trades.copy" >/dev/null
cols="exchange, symbol, trade_id, price, size, side, timestamp_exchange, timestamp_collector"
ours=()
backlogs=()
copies=()
paired=()
backlog_paired=()
for rep in $(seq "$REPS"); do
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
