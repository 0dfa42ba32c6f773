#!/usr/bin/env bash
# Coordinator scale (issue 10): one real `coordinator serve` (pinned to CPU 0) with SHARDS shards
# subscribed through the API (SHARDS/4 symbols x trades, ticker, book and 1m candles), and WORKERS
# real control clients (`collector-bench cluster-load`, pinned to CPU 1) that report every shard
# live at once and their stored events every second. Measures the time from the load generator's
# start until every shard is live ("time to place all shards from cold") and until no move is in
# flight (settled: late joiners are filled by rebalancing), then over WINDOW seconds
# the coordinator's CPU (% of one core, /proc/PID/stat utime+stime), its RSS (max VmRSS seen) and
# GET /api/v1/cluster latency (median and max of 10 samples).
# Goals: CPU <= 30 %, RSS <= 200 MB, /api/v1/cluster < 1 s.
#   cluster/bench/cluster_scale.sh [WORKERS=1000] [SHARDS=50000] [WINDOW=60]
# COLLECTOR_BUILD_PATH picks the scratch path (default .build); CLUSTER_SCALE_KEEP=1 keeps the logs;
# HANDSHAKES_PER_ADDRESS (default 32, the coordinator's default: every worker here is one address).
# No database (an inherited DATABASE_URL is ignored). Progress lines go to stderr. --help prints this text.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_init "$@"
bench_database none
WORKERS=${1:-1000}
SHARDS=${2:-50000}
WINDOW=${3:-60}
# Give up when placement takes longer than this (seconds).
PLACE_TIMEOUT=${PLACE_TIMEOUT:-300}

bench_build collector-bench coordinator

WORK=$(mktemp -d /tmp/cluster-scale.XXXXXX)
COORD_PID=""
LOAD_PID=""
cleanup() {
    [[ -n "$LOAD_PID" ]] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
    [[ -n "$COORD_PID" ]] && kill "$COORD_PID" 2>/dev/null && wait "$COORD_PID" 2>/dev/null
    if [[ "${CLUSTER_SCALE_KEEP:-0}" == 1 ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
CONTROL_PORT=$(free_port)
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
API="http://127.0.0.1:$HTTP_PORT"
TICKS=$(getconf CLK_TCK)

bench_say "starting the coordinator (CPU 0, no database)…"
# The coordinator alone on CPU 0; no database (data queries answer 501), no rate limit on the API.
env -u DATABASE_URL -u DB_HOST -u CLUSTER_SECRET_FILE -u API_TOKEN_FILE \
    CLUSTER_SECRET="$SECRET" API_TOKEN="$TOKEN" API_RATE_LIMIT=0 HEARTBEAT_INTERVAL=1 LEASE_TTL=5 \
    HANDSHAKES_PER_ADDRESS="${HANDSHAKES_PER_ADDRESS:-32}" \
    taskset -c 0 "$BUILD/release/coordinator" serve --data-dir "$WORK/data" --http-port "$HTTP_PORT" \
    --control-port "$CONTROL_PORT" >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
for _ in $(seq 100); do
    curl -fs "$API/health" >/dev/null 2>&1 && break
    kill -0 "$COORD_PID" 2>/dev/null || { cat "$WORK/coordinator.log"; echo "coordinator exited" >&2; exit 1; }
    sleep 0.1
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$COORD_PID/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$COORD_PID/status"; }
now_ms() { date +%s%3N; }
secs() { printf "%d.%02d" $(($1 / 1000)) $(($1 % 1000 / 10)); }
MAX_RSS=0
sample_rss() {
    local r
    r=$(rss_kb)
    ((r > MAX_RSS)) && MAX_RSS=$r
    return 0
}
# `collector_cluster_shards{state="live"}` (refreshed once a second): cheap to poll, unlike
# the full /api/v1/cluster document.
metric() { curl -fs "$API/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'; }

# SHARDS/4 symbols, four streams each, in requests of at most 500 symbols.
SYMBOLS=$(((SHARDS + 3) / 4))
bench_say "subscribing $SHARDS shards ($SYMBOLS symbols) through the API…"
SUB_START=$(now_ms)
for ((first = 0; first < SYMBOLS; first += 500)); do
    count=$((SYMBOLS - first < 500 ? SYMBOLS - first : 500))
    body=$(python3 -c 'import json,sys; f,n=int(sys.argv[1]),int(sys.argv[2]); print(json.dumps({"symbols":["S%05d-USDT" % i for i in range(f,f+n)],"feeds":["trades","ticker","book"],"timeframes":["1m"]}))' "$first" "$count")
    curl -fs -o /dev/null -X POST -H "Content-Type: application/json" -H "Authorization: Bearer $TOKEN" \
        --data "$body" "$API/api/v1/subscribe" || { echo "subscribe failed at symbol $first" >&2; exit 1; }
done
SUB_SECONDS=$(secs $(($(now_ms) - SUB_START)))
TOTAL=$(curl -fs "$API/api/v1/cluster" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["shards"]))')
echo "subscribed $TOTAL shards ($SYMBOLS symbols) in ${SUB_SECONDS}s; starting $WORKERS workers"

# The load generator on CPU 1; it runs until it is told to stop (SIGTERM), within a bound.
bench_say "waiting until every shard is live (at most $PLACE_TIMEOUT s)…"
LOAD_START=$(now_ms)
CPU_START_PLACE=$(cpu_ticks)
CLUSTER_SECRET="$SECRET" taskset -c 1 "$BUILD/release/collector-bench" cluster-load --workers "$WORKERS" \
    --coordinator "127.0.0.1:$CONTROL_PORT" --seconds $((PLACE_TIMEOUT + WINDOW + 60)) \
    >"$WORK/load.out" 2>"$WORK/load.err" &
LOAD_PID=$!

# Time to place all shards from cold: every shard live (gauge), confirmed by the cluster document.
PLACED=""
JOINED=""
while [[ -z "$PLACED" ]]; do
    kill -0 "$COORD_PID" 2>/dev/null || { tail -20 "$WORK/coordinator.log"; echo "coordinator died" >&2; exit 1; }
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$WORK/load.err"; echo "load generator died" >&2; exit 1; }
    sample_rss
    t=$(now_ms)
    if ((t - LOAD_START > PLACE_TIMEOUT * 1000)); then
        echo "not every shard live after ${PLACE_TIMEOUT}s: live=$(metric 'collector_cluster_shards{state="live"}')" >&2
        exit 1
    fi
    live=$(metric 'collector_cluster_shards{state="live"}' || echo 0)
    if [[ -z "$JOINED" && "$(metric 'collector_cluster_workers{state="live"}' || echo 0)" == "$WORKERS" ]]; then
        JOINED=$(secs $((t - LOAD_START)))
    fi
    if [[ "${live:-0}" == "$TOTAL" ]]; then
        if curl -fs "$API/api/v1/cluster" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["shards"] and all(s["state"] == "live" for s in d["shards"]) else 1)'; then
            PLACED=$(secs $((t - LOAD_START)))
        fi
    else
        sleep 0.2
    fi
done
PLACE_CPU=$((($(cpu_ticks) - CPU_START_PLACE) * 100000 / TICKS / ($(now_ms) - LOAD_START)))
echo "all $WORKERS workers joined after ${JOINED:-(not yet)}s; all $TOTAL shards live after ${PLACED}s (coordinator CPU ${PLACE_CPU}% meanwhile)"

bench_say "waiting until no move is in flight…"
# Settled: no move in flight (workers that joined late receive shards by rebalancing, at most 8
# moves at a time, each with a 10 s cutover). Bounded by PLACE_TIMEOUT.
while :; do
    t=$(now_ms)
    if ((t - LOAD_START > PLACE_TIMEOUT * 1000)); then
        echo "moves still under way after ${PLACE_TIMEOUT}s" >&2
        exit 1
    fi
    moves=$(curl -fs "$API/api/v1/cluster" | python3 -c 'import json, sys; print(json.load(sys.stdin)["moves"])')
    [[ "$moves" == 0 ]] && break
    sleep 1
done
echo "placement settled (no moves in flight) after $(secs $(($(now_ms) - LOAD_START)))s"

bench_say "measuring the steady window ($WINDOW s)…"
# The steady window: CPU over it, RSS every second, /api/v1/cluster ten times spread over it.
WINDOW_START=$(now_ms)
CPU_START=$(cpu_ticks)
LATENCIES=()
SAMPLE_EVERY_MS=$((WINDOW * 100 > 1000 ? WINDOW * 100 : 1000))
next_sample=$((SAMPLE_EVERY_MS / 2))
while (($(now_ms) - WINDOW_START < WINDOW * 1000)); do
    kill -0 "$COORD_PID" 2>/dev/null || { tail -20 "$WORK/coordinator.log"; echo "coordinator died" >&2; exit 1; }
    sample_rss
    if (($(now_ms) - WINDOW_START >= next_sample && ${#LATENCIES[@]} < 10)); then
        LATENCIES+=("$(curl -fs -o "$WORK/cluster.json" -w '%{time_total}' "$API/api/v1/cluster")")
        next_sample=$((next_sample + SAMPLE_EVERY_MS))
    else
        sleep 0.5
    fi
done
CPU_END=$(cpu_ticks)
WINDOW_END=$(now_ms)
sample_rss
STATE=$(curl -fs "$API/api/v1/cluster" | python3 -c '
import json, sys
d = json.load(sys.stdin)
states = {}
for s in d["shards"]:
    states[s["state"]] = states.get(s["state"], 0) + 1
print("healthy=%s workers=%d moves=%d shards=%s" % (d["healthy"], len(d["workers"]), d["moves"],
      ",".join("%s:%d" % kv for kv in sorted(states.items()))))')
kill -TERM "$LOAD_PID"
wait "$LOAD_PID" || true
LOAD_PID=""

python3 - "$CPU_START" "$CPU_END" "$TICKS" "$WINDOW_START" "$WINDOW_END" "$MAX_RSS" "${LATENCIES[@]}" <<'EOF'
import statistics, sys
start, end, ticks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seconds = (int(sys.argv[5]) - int(sys.argv[4])) / 1000
rss_mb = int(sys.argv[6]) / 1024
lat = [float(x) for x in sys.argv[7:]]
cpu = (end - start) / ticks / seconds * 100
med = statistics.median(lat) if lat else float("nan")
mx = max(lat) if lat else float("nan")
ok = lambda b: "ok" if b else "MISSED"
print(f"coordinator CPU over {seconds:.1f}s: {cpu:.1f}% of one core   (goal <= 30 %: {ok(cpu <= 30)})")
print(f"coordinator RSS max: {rss_mb:.1f} MB   (goal <= 200 MB: {ok(rss_mb <= 200)})")
print(f"GET /api/v1/cluster: median {med * 1000:.0f} ms, max {mx * 1000:.0f} ms over {len(lat)} samples"
      f"   (goal < 1 s: {ok(mx < 1)})")
print("  samples (ms, in order): " + " ".join(f"{x * 1000:.0f}" for x in lat))
EOF
echo "cluster at the end: $STATE"
grep '^RESULT' "$WORK/load.out" || { cat "$WORK/load.err"; echo "no RESULT from the load generator" >&2; }
echo "coordinator log: $(wc -l <"$WORK/coordinator.log") lines;" \
    "refused handshakes: $(grep -c 'too many handshakes' "$WORK/coordinator.log" || true);" \
    "lease expiries: $(grep -c 'worker lease expired' "$WORK/coordinator.log" || true);" \
    "peers not reading: $(grep -c 'the peer does not read' "$WORK/coordinator.log" || true)"
