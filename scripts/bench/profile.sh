#!/usr/bin/env bash
# Instructions per request of the authtrail process, from valgrind's callgrind: stable even on a
# busy machine, so two builds can be compared on a shared box.
#
#   scripts/bench/profile.sh [CASE] [N]        CASE: mapped (default), unmapped, sync, all
#
# Starts examples/bench_upstream (natively) and authtrail under callgrind with the case-d config
# of scripts/bench.sh (SQLite in a scratch directory), sends 200 warm-up requests uninstrumented,
# then instruments exactly N requests (default 2000, over 8 keep-alive connections) plus one
# second for the writer to store their events, and prints instructions per request and the
# functions that cost the most (inclusive and self). Knobs: AUTHTRAIL_BIN (default: this tree's
# release build), PROFILE_OUT (where the callgrind files are kept, default target/bench/profile).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WHICH=${1:-mapped}
N=${2:-2000}
CONNS=${PROFILE_CONNS:-8}
OUTDIR=${PROFILE_OUT:-$TARGET_DIR/bench/profile}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install -y valgrind)" >&2; exit 1; }

cargo build --release --quiet --bin authtrail --example bench_upstream --example bench_client
AUTHTRAIL=${AUTHTRAIL_BIN:-$TARGET_DIR/release/authtrail}
UPSTREAM_BIN=$TARGET_DIR/release/examples/bench_upstream
CLIENT_BIN=$TARGET_DIR/release/examples/bench_client
mkdir -p "$OUTDIR"

# shellcheck source=scripts/bench/case.sh
. "$ROOT/scripts/bench/case.sh"
scratch profile

UP_PORT=$(free_port)
"$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" > "$T/up.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$T/up.out" && break; sleep 0.1; done
BEARER=$("$CLIENT_BIN" mint "$JWT_SECRET" alice app-bench)

profile() {
    local case=$1 path=/v1/sessions delivery=async
    [ "$case" = unmapped ] && path=/v1/unmapped
    [ "$case" = sync ] && delivery=sync
    local port admin
    port=$(free_port)
    admin=$(free_port)
    case_config "$T/$case.yaml" "$UP_PORT" "$port" "$admin" "sqlite://$T/$case.db" "$T/$case-spool" "$delivery"
    local out=$OUTDIR/callgrind.$case.out
    rm -f "$out"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        "$AUTHTRAIL" serve --config "$T/$case.yaml" > "$T/$case.log" 2>&1 &
    local vg=$!
    PIDS+=("$vg")
    for _ in $(seq 600); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    "$CLIENT_BIN" requests "127.0.0.1:$port" "$path" 200 "$CONNS" "$BEARER" >/dev/null
    sleep 1
    callgrind_control -i on "$vg" >/dev/null 2>&1
    local res
    res=$("$CLIENT_BIN" requests "127.0.0.1:$port" "$path" "$N" "$CONNS" "$BEARER")
    sleep 1
    callgrind_control -i off "$vg" >/dev/null 2>&1
    kill -TERM "$vg"
    for _ in $(seq 600); do kill -0 "$vg" 2>/dev/null || break; sleep 0.1; done
    local total
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t {gsub(",","",$1); t=$1} END {print t+0}')
    echo "== $case: $res"
    echo "== $case: $total instructions, $((total / N)) per request ($out)"
    # (`|| true`: head closing the pipe early is not a failure.)
    callgrind_annotate --inclusive=yes "$out" > "$OUTDIR/$case.inclusive.txt" 2>/dev/null || true
    callgrind_annotate "$out" > "$OUTDIR/$case.self.txt" 2>/dev/null || true
    # The store path: the writer task's append (encoding, chain link, binding; inclusive) and
    # SQLite's statements on sqlx's connection thread (`sqlite3_step`, inclusive).
    local writer sqlite
    writer=$(awk '/Task::append/ {gsub(",","",$1); if ($1+0 > m) m=$1+0} END {print m+0}' "$OUTDIR/$case.inclusive.txt")
    sqlite=$(awk '/[^_a-z]sqlite3_step[^_a-z]/ {gsub(",","",$1); if ($1+0 > m) m=$1+0} END {print m+0}' "$OUTDIR/$case.inclusive.txt")
    echo "== $case: store path per request: store=$(((writer + sqlite) / N)), writer=$((writer / N)), sqlite=$((sqlite / N))"
    echo "== $case: top functions by self cost:"
    sed -n '/file:function/,$p' "$OUTDIR/$case.self.txt" | sed -n '3,22p' || true
}

if [ "$WHICH" = all ]; then
    for c in unmapped mapped sync; do profile "$c"; done
else
    profile "$WHICH"
fi
