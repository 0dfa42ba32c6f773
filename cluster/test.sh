#!/usr/bin/env bash
# The test command: sets up a fresh Debian machine (cluster/setup.sh), checks layering and
# formatting, then builds with warnings as errors and runs every test. Integration tests use the
# real peers installed by setup (Python websockets, openssl s_server, curl, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

bash cluster/setup.sh
export COLLECTOR_PYTHON="$PWD/.venv/bin/python3"

bash cluster/check-layering.sh
if ! swift format lint --strict -r Sources Tests; then
  echo "swift format lint found problems (run: swift format format -i -r Sources Tests)"
  exit 1
fi

swift build --build-tests -Xswiftc -warnings-as-errors
swift test --skip-build -Xswiftc -warnings-as-errors
