#!/usr/bin/env bash
# cluster/tsan.sh — the unit and runtime tests under a sanitizer (issue 13).
#
# usage: cluster/tsan.sh [--address] [--all] [FILTER]
#   (default)   ThreadSanitizer (swift test --sanitize=thread) in .build-tsan
#   --address   AddressSanitizer instead, in .build-asan
#   --all       every test target, the process-spawning integration suites too (needs what
#               cluster/test.sh sets up: COLLECTOR_PG_URL, COLLECTOR_PYTHON)
#   FILTER      a swift test --filter of your own instead of the unit targets
# A report stops the run (halt_on_error) and fails it. Suppressions: none; a false positive would
# be listed in cluster/sanitizer-suppressions.txt with the reason it is one.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizer=thread all=0 filter=
while (($#)); do
  case $1 in
  --help | -h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  --address) sanitizer=address ;;
  --all) all=1 ;;
  -*) echo "tsan.sh: unknown option $1 (see cluster/tsan.sh --help)" >&2; exit 64 ;;
  *) filter=$1 ;;
  esac
  shift
done

# The targets whose tests need no external process: the pure layers, the runtime (threads, epoll,
# TLS over loopback), the decoders' fuzz regressions.
unit='^(CryptoTests|ControlProtocolTests|CoordinationTests|ConfigurationTests|ExchangesTests|WireCoreTests|HTTP1ProtocolTests|WebSocketProtocolTests|RuntimeTests|FuzzRegressionTests)\.'
if [[ -z $filter ]]; then
  ((all)) && filter='.' || filter=$unit
fi
scratch=.build-tsan
[[ $sanitizer == address ]] && scratch=.build-asan

echo "tsan.sh: building the tests with --sanitize=$sanitizer in $scratch" >&2
swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch" 2>&1 | grep -E 'error|warning: |Compiling|Build' | tail -5
# The seeded cluster simulation runs 100 seeds here (500 in the plain run): TSan is ~4x slower.
export SIM_SEEDS=${SIM_SEEDS:-100}
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=0 ${ASAN_OPTIONS:-}"
echo "tsan.sh: running $filter" >&2
swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" --filter "$filter"
