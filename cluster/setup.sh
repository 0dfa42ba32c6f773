#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine (idempotent):
# system packages via apt (wrk among them: cluster/bench/api_data.sh drives the HTTP API with it),
# and a Python venv (.venv) with the independent test peers.
#   cluster/setup.sh           (--help prints this text)
# Exit codes: 0 done; non-zero an install step failed (its output above); 64 usage error.
set -euo pipefail
case "${1:-}" in
  "") ;;
  -h | --help)
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
    ;;
  *)
    echo "setup.sh: takes no arguments (cluster/setup.sh --help)" >&2
    exit 64
    ;;
esac
cd "$(dirname "$0")/.."

PACKAGES=(libpq-dev libssl-dev pkg-config postgresql postgresql-client openssl ca-certificates curl
  python3 python3-venv procps util-linux wrk)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${CI:-}" = true ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: apt-get install ${PACKAGES[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python3 ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r Tests/Peers/requirements.txt
echo "setup: done (python peers in .venv)"
