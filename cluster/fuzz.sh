#!/usr/bin/env bash
# cluster/fuzz.sh — builds the libFuzzer driver and runs the fuzz targets (issue 13).
#
# usage: cluster/fuzz.sh [--smoke | --seconds N | --execs N] [--list] [TARGET ...]
#   --smoke        CI's run: 15 s per target, fixed seed 1, the repo's seeds only (nothing kept)
#   --seconds N    run each target for N seconds (default 60)
#   --execs N      run each target for N executions or 30 minutes, whichever comes first;
#                  `--execs 10000000` is the full campaign
#   --list         print the targets and exit
#   TARGET ...     only these targets (default: all, in FuzzTarget.all's order)
#
# The build goes to .build-fuzz (optimised as the product is, with assertions kept: -c release
# -assert-config Debug, and -sanitize=fuzzer,address). Each target's working corpus is
# kept in .fuzz/corpus/TARGET (seeded from Fuzz/corpus/TARGET, which the repo keeps minimised), so a
# campaign resumes where the last one stopped. A crash, leak, timeout or broken property is saved
# as Fuzz/regressions/TARGET/KIND-SHA1: FuzzRegressionTests replays it in the normal test suite.
# Prints one line per target: executions, executions per second, edge coverage, corpus size,
# findings; exits 1 if any target found something, 64 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die_usage() {
  echo "fuzz.sh: $* (see cluster/fuzz.sh --help)" >&2
  exit 64
}

mode=seconds seconds=60 execs=0 list=0 targets=()
while (($#)); do
  case $1 in
  --help | -h) usage; exit 0 ;;
  --smoke) mode=smoke ;;
  --seconds)
    [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die_usage "--seconds needs a positive number"
    mode=seconds seconds=$2
    shift
    ;;
  --execs)
    [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die_usage "--execs needs a positive number"
    mode=execs execs=$2
    shift
    ;;
  --list) list=1 ;;
  -*) die_usage "unknown option $1" ;;
  *) targets+=("$1") ;;
  esac
  shift
done

SWIFT=${SWIFT:-swift}
BUILD=.build-fuzz
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
echo "fuzz.sh: building the fuzz driver in $BUILD (log: shown on failure)" >&2
if ! COLLECTOR_FUZZ=1 "$SWIFT" build --product collector-fuzz --scratch-path "$BUILD" \
  -c release -Xswiftc -assert-config -Xswiftc Debug \
  --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer >"$LOG" 2>&1; then
  grep -v 'Cannot export local symbol' "$LOG" | tail -40 >&2
  echo "fuzz.sh: the build failed" >&2
  exit 1
fi
DRIVER=$BUILD/release/collector-fuzz

all=$(FUZZ_TARGET=list "$DRIVER" | cut -d' ' -f1 | tr '\n' ' ')
all=${all% }
[[ -n $all ]] || { echo "fuzz.sh: the driver did not list its targets" >&2; exit 1; }
if ((list)); then
  FUZZ_TARGET=list "$DRIVER"
  exit 0
fi
((${#targets[@]})) || read -r -a targets <<<"$all"
for target in "${targets[@]}"; do
  [[ " $all " == *" $target "* ]] || die_usage "no target $target (targets: $all)"
done

# The dictionary for a target: its own, else the one of its format.
dictionary() {
  local name
  for name in "$1" "${1%%-*}"; do
    [[ -f Fuzz/dict/$name.dict ]] && { echo "Fuzz/dict/$name.dict"; return; }
  done
  case $1 in
  okx-* | control-handshake | coordinator-state | watermark-file | spool-file | subscriptions-file) echo Fuzz/dict/json.dict ;;
  settings) echo Fuzz/dict/toml.dict ;;
  ws-handshake) echo Fuzz/dict/http.dict ;;
  esac
}

found=0
printf '%-20s %12s %9s %7s %8s %s\n' target executions exec/s edges corpus findings
for target in "${targets[@]}"; do
  seeds=Fuzz/corpus/$target
  regressions=Fuzz/regressions/$target
  mkdir -p "$regressions"
  options=(-rss_limit_mb=2048 -timeout=10 -max_len=16384 -print_final_stats=1 "-artifact_prefix=$regressions/")
  dict=$(dictionary "$target")
  [[ -n $dict && -f $dict ]] && options+=("-dict=$dict")
  case $mode in
  smoke)
    work=$(mktemp -d)
    trap 'rm -f "$LOG"; rm -rf "$work"' EXIT
    options+=(-seed=1 -max_total_time=15)
    ;;
  seconds)
    work=.fuzz/corpus/$target
    options+=("-max_total_time=$seconds")
    ;;
  execs)
    work=.fuzz/corpus/$target
    options+=("-runs=$execs" -max_total_time=1800)
    ;;
  esac
  mkdir -p "$work"
  out=.fuzz/logs/$target.log
  mkdir -p .fuzz/logs
  echo "fuzz.sh: $target…" >&2
  status=0
  # The Swift runtime's backtracer walks memory ASan has poisoned (noise after the real report).
  SWIFT_BACKTRACE=enable=no FUZZ_TARGET=$target "$DRIVER" "${options[@]}" "$work" "$seeds" >"$out" 2>&1 || status=$?
  [[ $mode == smoke ]] && rm -rf "$work"
  # `|| true`: a run that died before its first status line has none of these (set -e).
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  edges=$({ grep -oE 'cov: [0-9]+' "$out" || true; } | tail -1 | cut -d' ' -f2)
  corpus=$({ grep -oE 'corp: [0-9]+' "$out" || true; } | tail -1 | cut -d' ' -f2)
  findings=none
  if ((status != 0)); then
    found=1
    artifacts=$({ grep -oE "$regressions/(crash|leak|timeout|oom|slow-unit)-[0-9a-f]+" "$out" || true; } | sort -u)
    names=${artifacts//$'\n'/ }
    findings="exit $status ${names:-(no artifact)} — see $out"
    { grep -E 'FINDING|ERROR: |SUMMARY' "$out" || true; } | head -5 >&2
    # CI's checkout is thrown away: print each input so it can be saved from the log
    # (`base64 -d > Fuzz/regressions/TARGET/NAME`).
    for artifact in $artifacts; do
      [[ -f $artifact ]] && { echo "fuzz.sh: $artifact (base64):" >&2; base64 -w0 "$artifact" >&2; echo >&2; }
    done
  fi
  printf '%-20s %12s %9s %7s %8s %s\n' "$target" "${runs:-?}" "${rate:-?}" "${edges:-?}" "${corpus:-?}" "$findings"
done
exit "$found"
