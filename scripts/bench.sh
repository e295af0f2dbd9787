#!/usr/bin/env bash
# Proxy overhead benchmark: one command, one run, the same load for every case.
#
#   scripts/bench.sh            # build, measure, write the "Proxy overhead" section of docs/benchmarks.md
#
# Cases (all on 127.0.0.1, the same wrk load: fixed connections, duration and JSON login body):
#   a  direct to examples/bench_upstream (a small JSON login response)
#   b  nginx reverse proxy, keepalive upstream, access log on
#   c  authtrail, unmapped route
#   d  authtrail, mapped login route, verified HS256 bearer token, async SQLite
#   e  as d with `delivery: sync`
#   f  as d on PostgreSQL (a private server started here, on a free port, stopped at the end)
#   g  the stack's floor: examples/bare_proxy, hyper + tokio forwarding with nothing of authtrail
#      (no map, timeouts, metrics or pool; one upstream connection per client connection)
# then memory (RSS idle, under load, with BENCH_IDLE_CONNS idle keep-alive connections, over a
# soak run) and examples/store_bench on SQLite and the private PostgreSQL; optionally the store
# path's instructions per mapped request (callgrind, scripts/bench/profile.sh) and the append
# rate while each store fills to BENCH_CURVE_EVENTS (`authtrail generate`). Before case e, the
# disk's durable-write latency (`bench_client fsync`): e is judged against the group-commit limit,
# connections ÷ fdatasync p50.
#
# Not part of the test suite. Installs wrk and nginx from Debian's packages when missing. Every
# process it starts is stopped by PID on exit; network traffic stays on 127.0.0.1.
#
# Knobs (environment):
#   BENCH_DURATION=10     seconds per measured wrk run       BENCH_REPEAT=3   runs per case (median reported)
#   BENCH_CONNS=32        wrk connections (1 wrk thread)      BENCH_WARMUP=3   warm-up seconds per case
#   BENCH_CASES="a b c d e f g"                               BENCH_LOADGEN_CPU=1, BENCH_SERVER_CPUS=0 (taskset)
#   BENCH_IDLE_CONNS=10000  BENCH_IDLE_HOLD=30 (s held open)  BENCH_IDLE_SETTLE=12 (s before the idle RSS sample)
#   BENCH_SOAK_SECS=120   length of the soak run (0: skip)
#   BENCH_KILL9=1         kill -9 accounting: scripts/faults.sh kill9-async at BENCH_KILL9_RATE=2000 req/s
#                         (acknowledged logins without their event after the restart; 0: skip)
#   BENCH_STORE=1         also run examples/store_bench (0: skip)   BENCH_MEMORY=1  the memory runs (0: skip)
#   BENCH_PROFILE=0       1: also scripts/bench/profile.sh mapped (instructions per request, the store path's share)
#   BENCH_CURVE_EVENTS=0  N: fill a fresh SQLite file, then a database of the private PostgreSQL, with N
#                         generated events each, recording the append rate per 100,000 (10000000: ~35 min, ~20 GB
#                         of disk at a time; each store is removed after its fill)
#   BENCH_QUIET_LOAD=     wait (at most BENCH_QUIET_WAIT=600 s) for the 1-min load average to drop below this
#   BENCH_WRITE_AHEAD=true  store.spool.write_ahead of the authtrail cases (false: the queue-only path, to compare)
#   BENCH_AUTHTRAIL_BIN=  benchmark another authtrail binary (e.g. a baseline build); default: this tree's release build
#   BENCH_OUT=docs/benchmarks.md  where the section goes; "-" prints it only. The section is also kept in target/bench/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-32}
WARMUP=${BENCH_WARMUP:-3}
CASES=${BENCH_CASES:-a b c d e f g}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-30}
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-12}
SOAK_SECS=${BENCH_SOAK_SECS:-120}
RUN_KILL9=${BENCH_KILL9:-1}
KILL9_RATE=${BENCH_KILL9_RATE:-2000}
RUN_STORE=${BENCH_STORE:-1}
RUN_MEMORY=${BENCH_MEMORY:-1}
RUN_PROFILE=${BENCH_PROFILE:-0}
CURVE_EVENTS=${BENCH_CURVE_EVENTS:-0}
QUIET_LOAD=${BENCH_QUIET_LOAD:-}
QUIET_WAIT=${BENCH_QUIET_WAIT:-600}
OUT=${BENCH_OUT:-docs/benchmarks.md}
WRITE_AHEAD=${BENCH_WRITE_AHEAD:-true}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PG_BIN=${BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}
# JWT_SECRET, FP_KEY, free_port, case_config: the configuration every authtrail case runs.
# shellcheck source=scripts/bench/case.sh
. "$ROOT/scripts/bench/case.sh"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
install_missing() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]} from Debian's packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # Keep the package from starting a system nginx on port 80 (policy-rc.d, if there is none).
    local policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$sudo" ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" \
        || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; }
    [ "$policy_added" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}
install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
[ -x "$PG_BIN/postgres" ] || log "no PostgreSQL at $PG_BIN: case f and the PostgreSQL store run are skipped"

# Raise the file limit for the idle-connection test (client and proxy each hold one fd per connection).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

log "building release binaries"
cargo build --release --quiet --bin authtrail --example bench_upstream --example bench_client \
    --example bare_proxy \
    $([ "$RUN_STORE" = 1 ] && echo --example store_bench) \
    $([ "$RUN_KILL9" = 1 ] && echo --example reliability_load --example demo_auth_server)
AUTHTRAIL=${BENCH_AUTHTRAIL_BIN:-$TARGET_DIR/release/authtrail}
UPSTREAM_BIN=$TARGET_DIR/release/examples/bench_upstream
CLIENT_BIN=$TARGET_DIR/release/examples/bench_client
STORE_BENCH_BIN=$TARGET_DIR/release/examples/store_bench
BARE_BIN=$TARGET_DIR/release/examples/bare_proxy

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup: every process started here is stopped by its PID.
T=$(mktemp -d /tmp/authtrail-bench.XXXXXX)
chmod 755 "$T"
PIDS=()
PG_DATA=""
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D '$PG_DATA' -m fast -w -t 30 stop" >/dev/null 2>&1 || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for CMD... : retry a readiness check for at most 30 s.
wait_for() {
    for _ in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

stop_pid() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}

# CPU time (utime + stime, clock ticks) of the given processes.
ticks() {
    local sum=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        # After "pid (comm) ": state is field 1, utime field 12, stime field 13.
        set -- $f
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Processes whose CPU a case is charged with: a PID and its children (nginx workers).
family() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

wait_quiet() {
    [ -n "$QUIET_LOAD" ] || return 0
    local waited=0
    while awk -v max="$QUIET_LOAD" '{ exit !($1 >= max) }' /proc/loadavg; do
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "load average still $(cut -d' ' -f1 /proc/loadavg) after ${QUIET_WAIT}s: measuring anyway"
            return 0
        fi
        sleep 10
        waited=$((waited + 10))
    done
    log "load average $(cut -d' ' -f1 /proc/loadavg) (< $QUIET_LOAD): measuring"
}

# ---------------------------------------------------------------------------------------------
# The upstream and the token
UP_PORT=$(free_port)
taskset -c "$SERVER_CPUS" "$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" > "$T/upstream.out" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_for grep -q listening "$T/upstream.out" || die "bench_upstream did not start"
BEARER=$("$CLIENT_BIN" mint "$JWT_SECRET" alice app-bench)
export BENCH_BEARER=$BEARER

RESULTS=$T/results.tsv
: > "$RESULTS"

# measure CASE URL STORE_PIDS_FILE PID... : warm up, then REPEAT measured wrk runs.
measure() {
    local case=$1 url=$2 store_pids_file=$3
    shift 3
    local pids=("$@")
    wait_quiet
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s scripts/bench/login.lua "$url" >/dev/null 2>&1 || true
    local i
    for i in $(seq "$REPEAT"); do
        local procs store_procs=() t0 t1 s0=0 s1=0 load out line
        procs=$(for p in "${pids[@]}"; do family "$p"; done)
        if [ -n "$store_pids_file" ]; then
            store_procs=($(family "$(cat "$store_pids_file")"))
            s0=$(ticks "${store_procs[@]}")
        fi
        t0=$(ticks $procs)
        out=$(taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s scripts/bench/login.lua "$url" 2>&1) \
            || die "wrk failed on case $case: $out"
        t1=$(ticks $procs)
        [ ${#store_procs[@]} -gt 0 ] && s1=$(ticks "${store_procs[@]}")
        load=$(cut -d' ' -f1 /proc/loadavg)
        line=$(grep '^BENCH ' <<<"$out") || die "no summary from wrk on case $case: $out"
        printf '%s\t%s\t%s\tcpu_ticks=%s\tstore_ticks=%s\tclk_tck=%s\tload=%s\n' \
            "$case" "$i" "${line#BENCH }" "$((t1 - t0))" "$((s1 - s0))" "$CLK_TCK" "$load" >> "$RESULTS"
        log "case $case run $i: $(awk -F'[ =]' '{printf "%d requests in %.1fs", $2, $4/1e6}' <<<"${line#BENCH }"), load $load"
    done
}

# start_authtrail NAME : start it on the server CPUs, wait for /readyz; sets AT_PID and AT_PORT.
start_authtrail() {
    local name=$1 url=$2 delivery=$3
    AT_PORT=$(free_port)
    local admin
    admin=$(free_port)
    case_config "$T/$name.yaml" "$UP_PORT" "$AT_PORT" "$admin" "$url" "$T/$name-spool" "$delivery"
    AUTHTRAIL_LOG=${AUTHTRAIL_LOG:-info} taskset -c "$SERVER_CPUS" "$AUTHTRAIL" serve --config "$T/$name.yaml" \
        > "$T/$name.log" 2>&1 &
    AT_PID=$!
    AT_ADMIN=$admin
    PIDS+=("$AT_PID")
    wait_for curl -fsS "http://127.0.0.1:$admin/readyz" || { cat "$T/$name.log" >&2; die "authtrail ($name) did not become ready"; }
    # One request through the mapped route proves the whole path (token, store) works.
    "$CLIENT_BIN" requests "127.0.0.1:$AT_PORT" /v1/sessions 1 1 "$BEARER" | grep -q 'ok=1 failed=0' \
        || { cat "$T/$name.log" >&2; die "authtrail ($name): the mapped route does not answer 2xx"; }
}

start_pg() {
    [ -x "$PG_BIN/postgres" ] || return 1
    id postgres >/dev/null 2>&1 || { log "no postgres user: PostgreSQL skipped"; return 1; }
    PG_DATA=$T/pg/data
    PG_PORT=$(free_port)
    # The server runs as postgres: its data directory and log live in a directory it owns.
    mkdir -p "$PG_DATA" && chown -R postgres "$T/pg" && chmod 700 "$PG_DATA"
    su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$PG_DATA' -A trust -U postgres --no-sync" > "$T/pg-init.log" 2>&1 \
        || { cat "$T/pg-init.log" >&2; return 1; }
    # Defaults otherwise (fsync=on, synchronous_commit=on, shared_buffers=128MB).
    su postgres -s /bin/sh -c "taskset -c '$SERVER_CPUS' $PG_BIN/pg_ctl -D '$PG_DATA' -l '$T/pg/server.log' -w -t 60 \
        -o \"-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$PG_DATA' -c max_connections=200\" start" > "$T/pg-start.log" 2>&1 \
        || { cat "$T/pg-start.log" "$T/pg/server.log" >&2; return 1; }
    head -1 "$PG_DATA/postmaster.pid" > "$T/pg.pid"
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'CREATE DATABASE bench' -c 'CREATE DATABASE store_bench' >/dev/null
    PG_VERSION=$(psql -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'SHOW server_version')
    return 0
}

# ---------------------------------------------------------------------------------------------
# Machine facts
{
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "rustc=$(rustc --version)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "authtrail_bin=$AUTHTRAIL"
    echo "git=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+uncommitted changes')"
    echo "start=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s\n' "duration=$DURATION" "repeat=$REPEAT" "conns=$CONNS" "warmup=$WARMUP" \
        "loadgen_cpu=$LOADGEN_CPU" "server_cpus=$SERVER_CPUS" "nofile=$NOFILE" \
        "idle_conns=$IDLE_CONNS" "idle_hold=$IDLE_HOLD" "idle_settle=$IDLE_SETTLE" "soak_secs=$SOAK_SECS" \
        "write_ahead=$WRITE_AHEAD" "curve_events=$CURVE_EVENTS"
} > "$T/machine.txt"

PG_OK=0
if [[ " $CASES " == *" f "* ]] || [ "$RUN_STORE" = 1 ] || [ "$CURVE_EVENTS" -gt 0 ]; then
    start_pg && PG_OK=1 && echo "postgres=$PG_VERSION" >> "$T/machine.txt"
fi

# ---------------------------------------------------------------------------------------------
# The cases
for c in $CASES; do
    case $c in
    a)
        log "case a: direct to the upstream"
        measure a "http://127.0.0.1:$UP_PORT/v1/sessions" "" "$UP_PID"
        ;;
    b)
        log "case b: nginx"
        NG_PORT=$(free_port)
        mkdir -p "$T/nginx"
        sed -e "s|@DIR@|$T/nginx|g" -e "s|@PORT@|$NG_PORT|g" -e "s|@UPSTREAM@|127.0.0.1:$UP_PORT|g" \
            scripts/bench/nginx.conf > "$T/nginx/nginx.conf"
        taskset -c "$SERVER_CPUS" "$NGINX" -c "$T/nginx/nginx.conf" -p "$T/nginx" > "$T/nginx/out.log" 2>&1 &
        NG_PID=$!
        PIDS+=("$NG_PID")
        wait_for curl -fsS -o /dev/null "http://127.0.0.1:$NG_PORT/v1/sessions" || { cat "$T/nginx/"*.log >&2; die "nginx did not start"; }
        measure b "http://127.0.0.1:$NG_PORT/v1/sessions" "" "$NG_PID"
        echo "nginx_access_log_lines=$(wc -l < "$T/nginx/access.log")" >> "$T/machine.txt"
        stop_pid "$NG_PID"
        ;;
    g)
        log "case g: the stack's floor (examples/bare_proxy)"
        BARE_PORT=$(free_port)
        taskset -c "$SERVER_CPUS" "$BARE_BIN" "127.0.0.1:$BARE_PORT" "127.0.0.1:$UP_PORT" > "$T/bare.out" 2>&1 &
        BARE_PID=$!
        PIDS+=("$BARE_PID")
        wait_for grep -q listening "$T/bare.out" || die "bare_proxy did not start"
        measure g "http://127.0.0.1:$BARE_PORT/v1/sessions" "" "$BARE_PID"
        stop_pid "$BARE_PID"
        ;;
    c | d)
        if [ -z "${SQ_PID:-}" ]; then
            start_authtrail sqlite "sqlite://$T/sqlite.db" async
            SQ_PID=$AT_PID SQ_PORT=$AT_PORT
        fi
        if [ "$c" = c ]; then
            log "case c: authtrail, unmapped route"
            measure c "http://127.0.0.1:$SQ_PORT/v1/unmapped" "" "$SQ_PID"
        else
            log "case d: authtrail, mapped route, async SQLite"
            measure d "http://127.0.0.1:$SQ_PORT/v1/sessions" "" "$SQ_PID"
        fi
        ;;
    e)
        # The durable-write latency of this disk, where sync.db is: e's group-commit limit.
        "$CLIENT_BIN" fsync "$T" 2000 > "$T/fsync.out" || die "bench_client fsync failed"
        log "disk: $(cat "$T/fsync.out")"
        sed -e 's/^fsync /fsync_/' -e 's/ /\nfsync_/g' "$T/fsync.out" >> "$T/machine.txt"
        log "case e: authtrail, mapped route, sync SQLite"
        start_authtrail sync "sqlite://$T/sync.db" sync
        measure e "http://127.0.0.1:$AT_PORT/v1/sessions" "" "$AT_PID"
        stop_pid "$AT_PID"
        ;;
    f)
        if [ "$PG_OK" != 1 ]; then
            log "case f skipped: no PostgreSQL"
            continue
        fi
        log "case f: authtrail, mapped route, async PostgreSQL"
        start_authtrail pg "postgres://postgres@127.0.0.1:$PG_PORT/bench" async
        measure f "http://127.0.0.1:$AT_PORT/v1/sessions" "$T/pg.pid" "$AT_PID"
        stop_pid "$AT_PID"
        ;;
    *) die "unknown case $c" ;;
    esac
done
if [ -n "${SQ_PID:-}" ]; then
    stop_pid "$SQ_PID"
    grep -E 'events flushed' "$T/sqlite.log" | tail -1 >> "$T/machine.txt" || true
fi

# ---------------------------------------------------------------------------------------------
# Memory: a fresh authtrail on SQLite (async), as in case d.
MEM=$T/memory.txt
: > "$MEM"
if [ "$RUN_MEMORY" = 1 ]; then
log "memory: idle, under load, ${IDLE_CONNS} idle connections, soak ${SOAK_SECS}s"
start_authtrail mem "sqlite://$T/mem.db" async
MEM_PID=$AT_PID MEM_PORT=$AT_PORT MEM_ADMIN=$AT_ADMIN
sleep 1
echo "idle_kib=$(rss_kib "$MEM_PID")" >> "$MEM"
# Under the benchmark load (same wrk settings), sampled every 0.5 s.
taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s scripts/bench/login.lua "http://127.0.0.1:$MEM_PORT/v1/sessions" \
    > "$T/mem-wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
peak=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    r=$(rss_kib "$MEM_PID"); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.5
done
echo "load_peak_kib=$peak" >> "$MEM"
echo "after_load_kib=$(rss_kib "$MEM_PID")" >> "$MEM"
# Idle keep-alive connections: each one makes one login request, then stays open and silent.
"$CLIENT_BIN" idle "127.0.0.1:$MEM_PORT" /v1/sessions "$IDLE_CONNS" "$IDLE_HOLD" > "$T/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 1200); do grep -q '^ready' "$T/idle.out" && break; kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
sleep 2
echo "idle_conns_ready=$(grep '^ready' "$T/idle.out" | cut -d' ' -f2-)" >> "$MEM"
# Right after their request, then once they have been silent past the park time (the
# header-read timeout, 10 s by default): see src/proxy/server.rs.
echo "idle_conns_fresh_kib=$(rss_kib "$MEM_PID")" >> "$MEM"
sleep "$IDLE_SETTLE"
echo "idle_conns_kib=$(rss_kib "$MEM_PID")" >> "$MEM"
echo "idle_conns_fds=$(ls /proc/"$MEM_PID"/fd | wc -l)" >> "$MEM"
for _ in $(seq $((IDLE_HOLD * 10 + 300))); do kill -0 "$IDLE_PID" 2>/dev/null || break; sleep 0.1; done
stop_pid "$IDLE_PID"
echo "idle_conns_closing=$(grep '^closing' "$T/idle.out" | cut -d' ' -f2-)" >> "$MEM"
sleep 2
echo "after_idle_conns_kib=$(rss_kib "$MEM_PID")" >> "$MEM"
# Soak: a longer run at the same load, RSS sampled every 5 s; growth is judged on the second half.
if [ "$SOAK_SECS" -gt 0 ]; then
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${SOAK_SECS}s" -s scripts/bench/login.lua "http://127.0.0.1:$MEM_PORT/v1/sessions" \
        > "$T/soak-wrk.out" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
    samples=()
    while kill -0 "$WRK_PID" 2>/dev/null; do
        samples+=("$(rss_kib "$MEM_PID")")
        sleep 5
    done
    echo "soak_samples_kib=${samples[*]}" >> "$MEM"
    echo "soak_requests=$(grep '^BENCH' "$T/soak-wrk.out" | sed 's/.*requests=\([0-9]*\).*/\1/')" >> "$MEM"
fi
echo "hwm_kib=$(hwm_kib "$MEM_PID")" >> "$MEM"
# What became of this instance's events (every request above is a mapped login): the pipeline's
# own counters, summed over their labels. Dropped = refused by a full queue (async delivery).
# The counters are read once the writer has caught up with the last requests (the events of the
# exchanges wrk cut at its end included): until two reads a second apart agree (at most 15 s).
metrics=$(curl -fsS "http://127.0.0.1:$MEM_ADMIN/metrics" || true)
for _ in $(seq 15); do
    sleep 1
    again=$(curl -fsS "http://127.0.0.1:$MEM_ADMIN/metrics" || true)
    [ "$(grep -E '^authtrail_(requests|events_[a-z]+)_total' <<<"$again")" = "$(grep -E '^authtrail_(requests|events_[a-z]+)_total' <<<"$metrics")" ] && break
    metrics=$again
done
for m in requests events_written events_duplicates events_dropped events_deferred events_failed events_spooled wal_errors; do
    echo "metric_$m=$(awk -v n="authtrail_${m}_total" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }' <<<"$metrics")" >> "$MEM"
done
stop_pid "$MEM_PID"
fi

# ---------------------------------------------------------------------------------------------
# kill -9 accounting: scripts/faults.sh's kill9-async scenario (its own sidecar, demo auth server
# and request-id-recording load), its row kept for this report only.
if [ "$RUN_KILL9" = 1 ]; then
    log "kill -9 under async load (scripts/faults.sh kill9-async, ${KILL9_RATE} req/s offered)"
    NO_BUILD=1 FAULTS_OUT="$T/faults" FAULTS_DOC=0 FAULT_RATE="$KILL9_RATE" CARGO_TARGET_DIR="$TARGET_DIR" \
        scripts/faults.sh kill9-async > "$T/kill9.log" 2>&1 || log "kill9-async failed (see $T/kill9.log)"
    grep '"kill9-async"' "$T/faults/results.jsonl" 2>/dev/null | tail -1 > "$T/kill9.jsonl" || true
    echo "kill9_rate=$KILL9_RATE" >> "$T/machine.txt"
fi

# ---------------------------------------------------------------------------------------------
# Store throughput (examples/store_bench), same machine, same run.
if [ "$RUN_STORE" = 1 ]; then
    log "store: examples/store_bench (SQLite$([ "$PG_OK" = 1 ] && echo ' and PostgreSQL'))"
    (
        cd "$T"
        if [ "$PG_OK" = 1 ]; then
            export AUTHTRAIL_BENCH_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/store_bench"
        fi
        taskset -c "$SERVER_CPUS" "$STORE_BENCH_BIN"
    ) > "$T/store_bench.out" 2>&1 || log "store_bench failed (see its output in the report)"
fi

# ---------------------------------------------------------------------------------------------
# The store path in instructions (callgrind): scripts/bench/profile.sh on the same binary.
if [ "$RUN_PROFILE" = 1 ]; then
    log "profile: scripts/bench/profile.sh mapped 2000 (callgrind)"
    AUTHTRAIL_BIN="$AUTHTRAIL" PROFILE_OUT="$T/profile" CARGO_TARGET_DIR="$TARGET_DIR" \
        scripts/bench/profile.sh mapped 2000 > "$T/profile.out" 2>&1 || log "profile failed (see $T/profile.out)"
fi

# ---------------------------------------------------------------------------------------------
# The append rate as each store fills: `authtrail generate` prints the rate of every 100,000.
curve() {
    local name=$1 url=$2
    printf 'upstream: http://127.0.0.1:9\nstore:\n  url: "%s"\n' "$url" > "$T/curve-$name.yaml"
    log "curve: $name, $CURVE_EVENTS events"
    "$AUTHTRAIL" generate --config "$T/curve-$name.yaml" --events "$CURVE_EVENTS" > "$T/curve-$name.out" 2>&1 \
        || log "generate on $name failed (see the report)"
    du -sb "$3" 2>/dev/null | awk '{print "curve_'"$name"'_bytes=" $1}' >> "$T/machine.txt"
}
if [ "$CURVE_EVENTS" -gt 0 ]; then
    mkdir -p "$T/curve"
    curve sqlite "sqlite://$T/curve/trail.db" "$T/curve"
    rm -rf "$T/curve"
    if [ "$PG_OK" = 1 ]; then
        psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'CREATE DATABASE curve' >/dev/null
        # Both cores, as a PostgreSQL of its own would have (the cases pinned it beside the proxy):
        # the postmaster's affinity passes to the backend forked for the fill.
        for p in $(cat "$T/pg.pid") $(pgrep -P "$(cat "$T/pg.pid")" 2>/dev/null || true); do
            taskset -a -pc 0-$(($(nproc) - 1)) "$p" >/dev/null 2>&1 || true
        done
        curve postgres "postgres://postgres@127.0.0.1:$PG_PORT/curve" "$PG_DATA"
        psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c 'DROP DATABASE curve' >/dev/null || true
    fi
fi

echo "end=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$T/machine.txt"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$T/machine.txt"

# ---------------------------------------------------------------------------------------------
# Report
mkdir -p "$TARGET_DIR/bench"
cp "$RESULTS" "$MEM" "$T/machine.txt" "$TARGET_DIR/bench/" 2>/dev/null || true
[ -f "$T/store_bench.out" ] && cp "$T/store_bench.out" "$TARGET_DIR/bench/"
[ -s "$T/kill9.jsonl" ] && cp "$T/kill9.jsonl" "$TARGET_DIR/bench/"
cp "$T"/curve-*.out "$T/profile.out" "$TARGET_DIR/bench/" 2>/dev/null || true
python3 scripts/bench/report.py "$T" "$OUT" "$TARGET_DIR/bench/section.md"
log "done: $( [ "$OUT" = - ] && echo printed || echo "section \"Proxy overhead\" of $OUT updated"), raw data in $TARGET_DIR/bench/"
