#!/usr/bin/env bash
# What every benchmark in cluster/bench shares (each sources this file; running it only prints this):
#   --help, -h       prints the benchmark's header comment (its usage) and exits 0; any other
#                    option exits 64
#   progress         lines "NAME.sh: what it is doing…" on stderr; stdout holds only the results
#   builds           release builds (SWIFT names the swift binary, COLLECTOR_BUILD_PATH the scratch
#                    path, default .build) whose output is kept in a log and shown if the build fails
#   PostgreSQL       a benchmark never touches a database it did not create: an inherited
#                    DATABASE_URL (and DB_*) is ignored, and a benchmark that needs a database starts
#                    its own throw-away server with cluster/pg.sh, on a port of its own, in a new
#                    mktemp directory, stopped and deleted on exit
#   BENCH_DRY_RUN=1  prints "database URL" (the URL it would use, or "database none") and exits 0
#                    before building anything
# In a benchmark:   source "$(dirname "$0")/common.sh"; bench_init "$@"; bench_database PORT|none
#   then bench_build PRODUCT…, bench_start_database "$WORK/pg" and bench_stop_database (in cleanup).

BENCH_NAME=${0##*/}
BUILD=${COLLECTOR_BUILD_PATH:-.build}
SWIFT=${SWIFT:-swift}

# A progress line (or a failure's reason) on stderr.
bench_say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
bench_fail() {
  bench_say "$*"
  exit 1
}

# The running script's header comment, without its leading "# ".
bench_usage() {
  local line
  {
    read -r line
    while IFS= read -r line && [[ $line == '#'* ]]; do
      line=${line#'#'}
      printf '%s\n' "${line# }"
    done
  } <"$0"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  bench_usage
  exit 0
fi

# bench_init "$@": --help; refuses unknown options; forgets any inherited database; moves to the
# repository root.
bench_init() {
  case "${1:-}" in
    -h | --help)
      bench_usage
      exit 0
      ;;
    -*)
      bench_say "unknown option '$1' ($0 --help shows the usage)"
      exit 64
      ;;
  esac
  unset DATABASE_URL DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
}

# bench_database PORT|none: the database this benchmark uses (BENCH_DATABASE_URL, BENCH_PG_PORT).
# With BENCH_DRY_RUN=1 it prints it and exits 0.
bench_database() {
  BENCH_DATABASE_URL=""
  BENCH_PG_PORT=""
  if [[ $1 != none ]]; then
    BENCH_PG_PORT=$1
    BENCH_DATABASE_URL=$("$BASH" cluster/pg.sh url "" "$BENCH_PG_PORT")
  fi
  if [[ ${BENCH_DRY_RUN:-0} == 1 ]]; then
    echo "database ${BENCH_DATABASE_URL:-none}"
    exit 0
  fi
}

# bench_build PRODUCT…: release builds; on failure the end of their output, then exit 1.
bench_build() {
  local product log
  log=$(mktemp "${TMPDIR:-/tmp}/collector-bench-build.XXXXXX")
  for product in "$@"; do
    bench_say "building $product (release, scratch path $BUILD)…"
    if ! "$SWIFT" build -c release --scratch-path "$BUILD" --product "$product" >>"$log" 2>&1; then
      tail -n 40 "$log" >&2
      bench_say "the build failed (the whole output: $log)"
      exit 1
    fi
  done
  rm -f "$log"
}

# bench_start_database DIR: starts this benchmark's own server in DIR (which must not exist yet: a
# path inside the benchmark's mktemp directory) and exports DATABASE_URL for it.
bench_start_database() {
  [[ -n $BENCH_PG_PORT ]] || bench_fail "bench_start_database without bench_database PORT"
  [[ ! -e $1 ]] || bench_fail "$1 exists: a benchmark's database goes in a new directory"
  bench_say "starting a throw-away PostgreSQL on port $BENCH_PG_PORT in $1…"
  BENCH_PG_DIR=$1
  local line
  line=$("$BASH" cluster/pg.sh start "$1" "$BENCH_PG_PORT") || bench_fail "PostgreSQL did not start"
  [[ $line == "export DATABASE_URL=$BENCH_DATABASE_URL" ]] ||
    bench_fail "pg.sh printed '$line', not the expected $BENCH_DATABASE_URL"
  export DATABASE_URL=$BENCH_DATABASE_URL
}

# bench_stop_database: stops and deletes the server bench_start_database started (if it did).
bench_stop_database() {
  if [[ -n ${BENCH_PG_DIR:-} ]]; then
    "$BASH" cluster/pg.sh stop "$BENCH_PG_DIR" >/dev/null 2>&1 || true
  fi
}
