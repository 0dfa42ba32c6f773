#!/usr/bin/env bash
# Enforces STYLE.md §2: which targets may import which C modules and system libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
check() {  # check MODULE ALLOWED_TARGET...
  local module=$1; shift
  local offenders
  offenders=$(grep -rlE "^(@preconcurrency )?((public|internal|package) )?import $module\$" Sources --include='*.swift' \
    | awk -F/ '{print $2}' | sort -u | grep -vxF -f <(printf '%s\n' "$@") || true)
  if [ -n "$offenders" ]; then
    echo "layering: $module imported by: $offenders (allowed: $*)"
    status=1
  fi
}
check Glibc Runtime TestSupport Locking
check CLinux Runtime
check COpenSSL Crypto TLS
check CLibPQ PostgresClient
check Foundation Runtime TestSupport FuzzTargets collector-bench coordinator worker exchange-sim ExchangeSimulator Observability Storage PostgresClient Collector Gateway Cluster
# The pure layers import nothing but the standard library.
for pure in CollectorCore WireCore Configuration; do
  if grep -rhE '^(@preconcurrency )?((public|internal|package) )?import ' "Sources/$pure" | grep -q .; then
    echo "layering: $pure must import nothing: $(grep -rhE '^.*import ' "Sources/$pure" | sort -u | tr '\n' ' ')"
    status=1
  fi
done
[ $status -eq 0 ] && echo "layering: ok"
exit $status
