#!/usr/bin/env bash
# The test command: sets up a fresh Debian machine (cluster/setup.sh), checks layering and
# formatting, then builds with warnings as errors and runs every test, then the fuzz smoke (15 s
# per target, fixed seed) and the unit tests under ThreadSanitizer. Integration tests use the
# real peers installed by setup (Python websockets, openssl s_server, curl, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

bash cluster/setup.sh
export COLLECTOR_PYTHON="$PWD/.venv/bin/python3"

# A throw-away PostgreSQL on 127.0.0.1 for the integration tests, stopped (and deleted) at exit.
export COLLECTOR_PG_DIR=${COLLECTOR_PG_DIR:-$(mktemp -d /tmp/collector-test-pg.XXXXXX)}
PG_PORT=${PG_PORT:-55433}
trap 'bash cluster/pg.sh stop "$COLLECTOR_PG_DIR" >/dev/null 2>&1 || true' EXIT
eval "$(bash cluster/pg.sh start "$COLLECTOR_PG_DIR" "$PG_PORT")"
export COLLECTOR_PG_URL="$DATABASE_URL"
export COLLECTOR_PG_PORT="$PG_PORT"
unset DATABASE_URL

bash cluster/check-layering.sh
if ! swift format lint --strict -r Sources Tests Fuzz/Driver; then
  echo "swift format lint found problems (run: swift format format -i -r Sources Tests Fuzz/Driver)"
  exit 1
fi

swift build --build-tests -Xswiftc -warnings-as-errors
swift test --skip-build -Xswiftc -warnings-as-errors

# Hostile input (issue 13): every fuzz target for 15 s with seed 1; a finding fails the run and is
# saved under Fuzz/regressions/ for the suite above to replay.
bash cluster/fuzz.sh --smoke

# The unit and runtime tests under ThreadSanitizer (a separate build; the process-spawning
# integration suites stay in the plain run above).
bash cluster/tsan.sh
