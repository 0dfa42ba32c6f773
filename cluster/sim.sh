#!/usr/bin/env bash
# exchange-sim in the background, for running the collector offline by hand:
#   eval "$(cluster/sim.sh start [DIR] [-- exchange-sim options])"   prints the OKX_* export lines
#                                      (and SSL_CERT_FILE with --tls) plus EXCHANGE_SIM_PID
#   cluster/sim.sh stop [DIR]
# DIR (default /tmp/exchange-sim) holds its output (sim.out) and pid; SIM_BIN names the binary
# (default: .build/release/exchange-sim, built if missing).
set -euo pipefail
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
cmd=${1:-}
case "$cmd" in
  -h|--help) usage; exit 0 ;;
  start|stop) shift ;;
  *) echo "sim.sh: ${cmd:+unknown command $cmd; }start or stop is needed (see cluster/sim.sh --help)" >&2; exit 64 ;;
esac
DIR=/tmp/exchange-sim
if [ $# -gt 0 ] && [ "$1" != "--" ]; then DIR=$1; shift; fi
[ "${1:-}" = "--" ] && shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SIM_BIN:-$ROOT/.build/release/exchange-sim}
case "$cmd" in
  start)
    if [ ! -x "$BIN" ]; then
      echo "sim.sh: building exchange-sim (release)…" >&2
      (cd "$ROOT" && swift build -c release --product exchange-sim >&2)
    fi
    mkdir -p "$DIR"
    if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
      echo "sim.sh: exchange-sim already runs from $DIR (pid $(cat "$DIR/pid")); cluster/sim.sh stop $DIR" >&2
      exit 1
    fi
    nohup "$BIN" --print-env "$@" >"$DIR/env" 2>"$DIR/sim.out" </dev/null &
    echo $! >"$DIR/pid"
    for _ in $(seq 100); do grep -q LISTENING "$DIR/sim.out" && break; kill -0 "$(cat "$DIR/pid")" 2>/dev/null || break; sleep 0.1; done
    if ! grep -q LISTENING "$DIR/sim.out"; then
      cat "$DIR/sim.out" >&2
      echo "sim.sh: exchange-sim did not start" >&2
      exit 1
    fi
    sed -n 's/^SYMBOLS /sim.sh: symbols /p' "$DIR/sim.out" >&2
    cat "$DIR/env"
    echo "export EXCHANGE_SIM_PID=$(cat "$DIR/pid")"
    ;;
  stop)
    if [ -f "$DIR/pid" ]; then
      kill "$(cat "$DIR/pid")" 2>/dev/null || true
      rm -f "$DIR/pid"
      echo "sim.sh: stopped" >&2
    else
      echo "sim.sh: nothing runs from $DIR" >&2
    fi
    ;;
esac
