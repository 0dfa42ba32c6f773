#!/usr/bin/env bash
# PostgreSQL candle upserts (issue 3): ROWS distinct keys written through CandleStore (COPY into a
# staging table + one upsert per batch) versus a plain `psql \copy` of the same rows into the same
# (truncated) table. Durable settings (fsync=on, synchronous_commit=on). Median of REPS each.
#   cluster/bench/pg_upsert.sh [ROWS] [BATCH] [REPS]      (uses $DATABASE_URL, else a throw-away server)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-1000000}
BATCH=${2:-10000}
REPS=${3:-3}
swift build -c release --product collector-bench >/dev/null
WORK=$(mktemp -d)
chmod 755 "$WORK"
cleanup() {
  [ -n "${OWN_PG:-}" ] && bash cluster/pg.sh stop "$WORK/pg" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${DATABASE_URL:-}" ]; then
  OWN_PG=1
  eval "$(bash cluster/pg.sh start "$WORK/pg" 55499)"
fi
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
B=.build/release/collector-bench
$B pg-upsert --conninfo "$DATABASE_URL" --rows "$ROWS" --write-copy-file "$WORK/rows.copy" >/dev/null
ours=()
for _ in $(seq "$REPS"); do
  line=$($B pg-upsert --conninfo "$DATABASE_URL" --rows "$ROWS" --batch "$BATCH")
  echo "$line"
  ours+=("$(sed -E 's/.*rows_per_sec=([0-9]+).*/\1/' <<<"$line")")
done
# The same keys again (all exist): the ON CONFLICT update path, reported for information.
$B pg-upsert --conninfo "$DATABASE_URL" --rows "$ROWS" --batch "$BATCH" --existing
cols="exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, confirmed, timestamp_exchange, timestamp_collector"
copies=()
for _ in $(seq "$REPS"); do
  psql "$DATABASE_URL" -qAt -c "TRUNCATE candles" >/dev/null
  start=$(date +%s.%N)
  psql "$DATABASE_URL" -qAt -c "\\copy candles ($cols) FROM '$WORK/rows.copy'" >/dev/null
  end=$(date +%s.%N)
  rate=$(awk -v r="$ROWS" -v s="$start" -v e="$end" 'BEGIN {printf "%d", r / (e - s)}')
  echo "RESULT mode=psql-copy rows=$ROWS seconds=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}') rows_per_sec=$rate"
  copies+=("$rate")
done
mo=$(printf '%s\n' "${ours[@]}" | median)
mc=$(printf '%s\n' "${copies[@]}" | median)
echo "MEDIAN upsert rows_per_sec=$mo psql_copy rows_per_sec=$mc ratio=$(awk -v a="$mo" -v b="$mc" 'BEGIN {printf "%.2f", a / b}') (rows=$ROWS batch=$BATCH reps=$REPS)"
