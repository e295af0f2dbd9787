#!/usr/bin/env bash
# CPU seconds per 10,000 requests of two authtrail binaries, side by side, their turns alternated:
# on a shared machine whose speed drifts from minute to minute, a difference of a few percent
# shows in the pairs where consecutive `scripts/bench.sh` runs cannot show it.
#
#   scripts/bench/cpu-ab.sh BASE_BIN NEW_BIN
#
# Both sidecars run at once on the case-d config of scripts/bench.sh (async SQLite in a scratch
# directory, HS256 bearer), pinned to CPU 0; one examples/bench_upstream and the client on CPU 1.
# For each path (an unmapped one, then the mapped login) each binary gets 5,000 warm-up
# requests, then ROUNDS turns each of N requests over 8 keep-alive connections, alternating
# (base first in odd rounds, new first in even ones). A turn's CPU is the sidecar's user +
# system ticks from /proc/PID/stat, read once the writer has gone quiet, so the store's work is
# in the mapped figure. Prints one line per turn and a summary (mean and median of each).
# Knobs: CPU_AB_N (default 60000), CPU_AB_ROUNDS (5), CPU_AB_PATHS ("/v1/unmapped /v1/sessions").
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ $# -eq 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
BIN_BASE=$(realpath "$1")
BIN_NEW=$(realpath "$2")
N=${CPU_AB_N:-60000}
ROUNDS=${CPU_AB_ROUNDS:-5}
PATHS=${CPU_AB_PATHS:-/v1/unmapped /v1/sessions}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --quiet --example bench_upstream --example bench_client
UPSTREAM_BIN=$TARGET_DIR/release/examples/bench_upstream
CLIENT_BIN=$TARGET_DIR/release/examples/bench_client

# shellcheck source=scripts/bench/case.sh
. "$ROOT/scripts/bench/case.sh"
scratch cpu-ab
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

UP_PORT=$(free_port)
taskset -c 1 "$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" > "$T/up.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$T/up.out" && break; sleep 0.1; done
BEARER=$("$CLIENT_BIN" mint "$JWT_SECRET" alice app-bench)

declare -A PORT PID ADMIN
for w in base new; do
    port=$(free_port)
    admin=$(free_port)
    PORT[$w]=$port
    ADMIN[$w]=$admin
    case_config "$T/$w.yaml" "$UP_PORT" "$port" "$admin" "sqlite://$T/$w.db" "$T/$w-spool" async
    bin=$BIN_BASE
    [ "$w" = new ] && bin=$BIN_NEW
    taskset -c 0 "$bin" serve --config "$T/$w.yaml" > "$T/$w.log" 2>&1 &
    PID[$w]=$!
    PIDS+=("${PID[$w]}")
done
for w in base new; do
    for _ in $(seq 300); do curl -fsS "http://127.0.0.1:${ADMIN[$w]}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

# The sidecar's ticks once they stop moving (the writer has stored what it was given).
settled_ticks() {
    local a b
    a=$(ticks "$1")
    for _ in $(seq 50); do
        sleep 0.3
        b=$(ticks "$1")
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$a"
}

OUT=$T/turns.txt
for path in $PATHS; do
    for w in base new; do
        taskset -c 1 "$CLIENT_BIN" requests "127.0.0.1:${PORT[$w]}" "$path" 5000 8 "$BEARER" > /dev/null
    done
    for r in $(seq "$ROUNDS"); do
        order="base new"
        [ $((r % 2)) = 0 ] && order="new base"
        for w in $order; do
            t0=$(settled_ticks "${PID[$w]}")
            res=$(taskset -c 1 "$CLIENT_BIN" requests "127.0.0.1:${PORT[$w]}" "$path" "$N" 8 "$BEARER")
            t1=$(settled_ticks "${PID[$w]}")
            line="$path $w round=$r ticks=$((t1 - t0)) requests=$N $res"
            echo "$line"
            echo "$line" >> "$OUT"
        done
    done
done

python3 - "$OUT" "$BIN_BASE" "$BIN_NEW" <<'EOF'
import re, statistics, sys
turns = {}
for line in open(sys.argv[1]):
    path, which = line.split()[:2]
    ticks = int(re.search(r"ticks=(\d+)", line).group(1))
    n = int(re.search(r"requests=(\d+)", line).group(1))
    # Ticks are 1/100 s (USER_HZ): CPU seconds per 10,000 requests.
    turns.setdefault(path, {}).setdefault(which, []).append(ticks / 100 / n * 10_000)
print(f"\nCPU seconds per 10,000 requests; base = {sys.argv[2]}, new = {sys.argv[3]}")
print("| path | base: turns | mean | median | new: turns | mean | median | new ÷ base (means) |")
print("|---|---|---:|---:|---|---:|---:|---:|")
for path, w in turns.items():
    b, n = w.get("base", []), w.get("new", [])
    if not b or not n:
        continue
    fmt = lambda xs: " / ".join(f"{x:.3f}" for x in xs)
    print(f"| {path} | {fmt(b)} | {statistics.mean(b):.3f} | {statistics.median(b):.3f} "
          f"| {fmt(n)} | {statistics.mean(n):.3f} | {statistics.median(n):.3f} "
          f"| {statistics.mean(n) / statistics.mean(b):.3f} |")
EOF
