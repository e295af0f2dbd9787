#!/usr/bin/env bash
# The slow half of the fault suite: real `authtrail serve` processes (release build) in front of
# the demo auth server, under bounded load from examples/reliability_load.rs on 127.0.0.1, while
# the store is locked, made read-only, filled up, or (PostgreSQL) stopped and restarted, and
# while the sidecar itself is killed with SIGKILL or stopped with SIGTERM. The fast half (a
# misbehaving upstream) is tests/fault.rs, run here too for its rows.
#
#   scripts/faults.sh [SCENARIO...]     # default: all; needs root (tmpfs mounts, runuser)
#
# For each scenario: what the clients were told (per route: async `login`, sync `reset`), what
# the trail holds, and the counts — requests acknowledged (2xx) vs events stored, acknowledged
# requests with no event, duplicates. Results go to target/faults/results.jsonl and into the
# table between the `faults:` markers in docs/reliability.md. Nothing here talks to anything but
# 127.0.0.1; the PostgreSQL server is a private one in a temp dir, never the shared dev server.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ALL=(upstream sqlite-locked sqlite-readonly disk-full disk-full-spool-too pg-restart pg-crash pg-readonly kill9-async kill9-sync sigterm)
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL[@]}")
RATE=${FAULT_RATE:-300}
# FAULTS_OUT: where the result rows and logs go (default target/faults). FAULTS_DOC=0 leaves
# docs/reliability.md alone (scripts/bench.sh runs kill9-async this way for its own report).
OUT=${FAULTS_OUT:-target/faults}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
# FAULTS_APPEND=1 keeps the rows of earlier runs (e.g. `FAULTS_APPEND=1 scripts/faults.sh upstream`).
[ "${FAULTS_APPEND:-0}" = 1 ] || : >"$RESULTS"

echo "==> release build"
# NO_BUILD=1 reuses the binaries already in target/release.
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin authtrail --example reliability_load --example demo_auth_server
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOAD=$BIN/examples/reliability_load

WORK=$(mktemp -d /tmp/authtrail-faults.XXXXXX)
chmod 755 "$WORK" # the private PostgreSQL server runs as the postgres user
PIDS=()
MOUNTS=()
PG_DATA=""
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$PG_DATA" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
  chattr -R -i "$WORK" 2>/dev/null || true # sqlite-readonly's files, if it was cut short
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  for p in $(shuf -i 20000-60000 -n 100); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}

# The upstream: the demo auth server.
"$BIN/examples/demo_auth_server" >"$WORK/demo.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q listening "$WORK/demo.out" && break; sleep 0.05; done
DEMO=$(awk '/listening/ {print $2}' "$WORK/demo.out")
echo "demo auth server on $DEMO"

# config STORE_URL SPOOL_DIR [SPOOL_MAX]
config() {
  cat <<EOF
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
upstream: http://$DEMO
store:
  url: "$1"
  flush_interval: 50ms
  sync_timeout: 1s
  spool: { dir: $2, max_bytes: ${3:-256MiB} }
routes:
  - id: login
    match: { method: POST, path: /v1/sessions }
    event: auth.login
    actor: { request_body: /username }
  - id: reset
    match: { method: POST, path: /v1/password/reset }
    event: password.reset.request
    target: { kind: user, from: { request_body: /email } }
    delivery: sync
EOF
}

# start_serve CONFIG LOG: sets SERVE_PID, PROXY, ADMIN
start_serve() {
  # A restart appends to the same log: only the lines after this point are the new process's
  # (reading the first "serving" line made the restarts of kill9-* wait on the dead process's
  # admin port, and never settle).
  local skip
  skip=$( (cat "$2" 2>/dev/null || true) | wc -l)
  "$BIN/authtrail" --log-format json serve --config "$1" 2>>"$2" &
  SERVE_PID=$!
  PIDS+=("$SERVE_PID")
  local line=""
  for _ in $(seq 1 300); do
    line=$(tail -n +"$((skip + 1))" "$2" | grep -m1 '"authtrail serving"' || true)
    [ -n "$line" ] && break
    sleep 0.05
  done
  [ -n "$line" ] || { echo "serve did not start:"; tail -5 "$2"; return 1; }
  PROXY=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fields"]["proxy"])' "$line")
  ADMIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fields"]["admin"])' "$line")
}

readyz() { curl -s --max-time 3 "http://$ADMIN/readyz" || echo '{}'; }
# "degraded (store down: write_failed, spool ok, spool_depth 12)" from a /readyz answer.
readyz_summary() {
  python3 - "$1" <<'PY'
import json, sys
r = json.loads(sys.argv[1] or "{}")
err = ": " + r["store_error"] if "store_error" in r else ""
print(f"{r.get('status')} (store {r.get('store')}{err}, spool {r.get('spool')}, spool_depth {r.get('spool_depth')})")
PY
}
final_counts() {
  python3 - "$1" <<'PY'
import json, sys
e = json.loads(sys.argv[1] or "{}").get("events", {})
print(" ".join(f"{k}={e[k]}" for k in ("written", "spooled", "replayed", "dropped", "failed") if k in e))
PY
}

# Wait (bounded) until nothing is queued or spooled.
settle() {
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    local r
    r=$(readyz)
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r.get("status")=="ready" and r.get("queue_depth",1)==0 and r.get("spool_depth",1)==0 else 1)' "$r"; then
      return 0
    fi
    sleep 0.1
  done
  echo "did not settle: $(readyz)"
}

# stop_serve: SIGTERM, wait; sets EXIT_CODE
stop_serve() {
  kill -TERM "$SERVE_PID"
  set +e
  wait "$SERVE_PID"
  EXIT_CODE=$?
  set -e
}

# load SECONDS PREFIX [extra args]: background load, acks in $WORK/acks-PREFIX.csv; sets LOAD_PID
load() {
  local secs=$1 prefix=$2
  shift 2
  "$LOAD" --target "http://$PROXY" --mix faults --paths /v1/sessions,/v1/password/reset \
    --seconds "$secs" --requests 1000000 --concurrency 8 --rate "$RATE" --prefix "$prefix" \
    --out "$WORK/acks-$prefix.csv" "$@" >"$WORK/load-$prefix.json" &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
}

events_sqlite() { sqlite3 -separator $'\t' "$1" "select coalesce(request_id,''), coalesce(stage,''), outcome, coalesce(reason,'') from events"; }
events_pg() { psql "$1" -At -F $'\t' -c "select coalesce(request_id,''), coalesce(stage,''), outcome, coalesce(reason,'') from events"; }

# analyse NAME WHAT-HAPPENED EVENTS-TSV ACKS... [-- key=value ...]
analyse() {
  python3 - "$@" <<'PY' | tee -a "$RESULTS"
import collections, json, sys
name, what, events_file = sys.argv[1:4]
rest = sys.argv[4:]
extra = {}
if "--" in rest:
    i = rest.index("--")
    rest, kv = rest[:i], rest[i + 1:]
    for item in kv:
        k, v = item.split("=", 1)
        extra[k] = v
acks = {}
for f in rest:
    for line in open(f):
        rid, path, status = line.strip().split(",")
        acks[rid] = (path, int(status))
events = collections.defaultdict(list)
for line in open(events_file):
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 4:
        continue
    rid, stage, outcome, reason = parts[:4]
    events[rid].append((stage, outcome, reason))
route = {"/v1/sessions": "login (async)", "/v1/password/reset": "reset (sync)"}
rows = {}
for rid, (path, status) in acks.items():
    r = rows.setdefault(route.get(path, path), collections.Counter())
    r["sent"] += 1
    r["status_%d" % status if status else "no_response"] += 1
    evs = events.get(rid, [])
    completed = [e for e in evs if e[0] == "completed"]
    attempts = [e for e in evs if e[0] == "attempt"]
    if 200 <= status < 300:
        r["acked"] += 1
        if completed:
            r["acked_with_event"] += 1
        else:
            r["acked_without_event"] += 1
        if path == "/v1/password/reset" and not attempts:
            r["acked_sync_without_attempt"] += 1
    elif completed or attempts:
        r["not_acked_with_event"] += 1
    if len(completed) > 1 or len(attempts) > 1:
        r["duplicates"] += 1
    for e in completed:
        r["event_%s%s" % (e[1], "/" + e[2] if e[2] else "")] += 1
stored = sum(len(v) for v in events.values())
out = {"suite": "store", "scenario": name, "what": what, "events_stored": stored,
       "routes": {k: dict(sorted(v.items())) for k, v in rows.items()}}
out.update(extra)
print(json.dumps(out))
PY
}

scenario_upstream() {
  echo "==> upstream faults (tests/fault.rs)"
  AUTHTRAIL_FAULT_REPORT="$ROOT/$RESULTS" cargo test --test fault -- --test-threads 1 >"$OUT/upstream.log" 2>&1 \
    || { tail -30 "$OUT/upstream.log"; echo "upstream faults: FAILED (see $OUT/upstream.log)"; }
}

# An outage on a SQLite store: FAULT_ON / FAULT_OFF are commands run 4s into a 16s load and 8s
# later.
sqlite_outage() {
  local name=$1 what=$2 db=$3 spool=$4 on=$5 off=$6 spool_max=${7:-256MiB}
  local dir="$WORK/$name"
  mkdir -p "$dir"
  config "sqlite://$db" "$spool" "$spool_max" >"$dir/cfg.yaml"
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  load 16 "$name"
  sleep 4
  eval "$on"
  sleep 8
  local during
  during=$(readyz)
  eval "$off"
  wait "$LOAD_PID" || true
  settle
  local ready
  ready=$(readyz)
  stop_serve
  events_sqlite "$db" >"$dir/events.tsv"
  analyse "$name" "$what" "$dir/events.tsv" "$WORK/acks-$name.csv" -- \
    "exit_code=$EXIT_CODE" \
    "readyz_during=$(readyz_summary "$during")" \
    "final=$(final_counts "$ready")"
}

scenario_sqlite-locked() {
  echo "==> SQLite locked by another process for 8s (busy_timeout is 5s)"
  local dir="$WORK/sqlite-locked"
  mkdir -p "$dir"
  # sqlite3 holds an exclusive lock while .shell sleeps.
  sqlite_outage sqlite-locked "another process holds an exclusive lock for 8s" "$dir/trail.db" "$dir/spool" \
    "(printf 'BEGIN EXCLUSIVE;\nSELECT count(*) FROM events;\n.shell sleep 8\nCOMMIT;\n' | sqlite3 -cmd '.timeout 5000' '$dir/trail.db' >/dev/null 2>&1 &)" \
    "sleep 0.5"
}

# A read-only SQLite store under a running sidecar. `mount -o remount,ro` cannot do it (EBUSY
# while the sidecar holds the database open for writing); `chattr +i` can: once the database
# and its WAL are immutable, every write fails with EPERM, root's too, also through descriptors
# opened before. (Not the -shm file: SQLite writes it through mmap, where a refused write
# would be a SIGBUS rather than an error.)
scenario_sqlite-readonly() {
  echo "==> SQLite database and WAL made immutable (chattr +i) for 8s"
  local dir="$WORK/sqlite-readonly"
  mkdir -p "$dir"
  if ! { : >"$dir/probe" && chattr +i "$dir/probe" 2>/dev/null; }; then
    echo "chattr +i does not work on $dir's file system: skipped"
    return 0
  fi
  chattr -i "$dir/probe" && rm -f "$dir/probe"
  sqlite_outage sqlite-readonly "the database and its WAL are made immutable (chattr +i: writes fail with EPERM) for 8s, spool beside them" "$dir/trail.db" "$dir/spool" \
    "chattr +i '$dir/trail.db' '$dir/trail.db-wal'" "chattr -i '$dir/trail.db' '$dir/trail.db-wal'"
}

scenario_disk-full() {
  echo "==> the store's disk fills up (32 MiB tmpfs filled by a file), then the file is removed"
  local mnt="$WORK/full-mnt"
  mkdir -p "$mnt"
  mount -t tmpfs -o size=32m tmpfs "$mnt"
  MOUNTS+=("$mnt")
  sqlite_outage disk-full "the store's disk is full (32 MiB tmpfs filled up by a file), then freed; spool on another disk" "$mnt/trail.db" "$WORK/disk-full-spool" \
    "dd if=/dev/zero of='$mnt/filler' bs=64k >/dev/null 2>&1 || true" "rm -f '$mnt/filler'"
  umount "$mnt"
}

scenario_disk-full-spool-too() {
  echo "==> store and spool on one disk that fills up"
  local mnt="$WORK/full2-mnt"
  mkdir -p "$mnt"
  mount -t tmpfs -o size=32m tmpfs "$mnt"
  MOUNTS+=("$mnt")
  sqlite_outage disk-full-spool-too "store and spool share a disk that is full for 8s" "$mnt/trail.db" "$mnt/spool" \
    "dd if=/dev/zero of='$mnt/filler' bs=64k >/dev/null 2>&1 || true" "rm -f '$mnt/filler'"
  umount "$mnt"
}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
pg_start() {
  if [ -z "$PG_DATA" ]; then
    PG_DIR="$WORK/pg"
    mkdir -p "$PG_DIR"
    chown postgres "$PG_DIR"
    PG_PORT=$(free_port)
    PG_DATA="$PG_DIR/data"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres >"$PG_DIR/initdb.log"
  fi
  if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    return 0
  fi
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
}
pg_stop() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$1" -w stop >/dev/null; }

pg_outage() {
  local name=$1 what=$2 mode=$3
  [ -n "$PG_BIN" ] || { echo "no PostgreSQL server binaries: skipped"; return 0; }
  pg_start
  local db="fault_${name//-/_}"
  runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" "$db"
  local url="postgres://postgres@127.0.0.1:$PG_PORT/$db"
  local dir="$WORK/$name"
  mkdir -p "$dir"
  config "$url" "$dir/spool" >"$dir/cfg.yaml"
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  load 20 "$name"
  sleep 4
  pg_stop "$mode"
  sleep 6
  local during
  during=$(readyz)
  pg_start
  wait "$LOAD_PID" || true
  settle
  local ready
  ready=$(readyz)
  stop_serve
  events_pg "$url" >"$dir/events.tsv"
  analyse "$name" "$what" "$dir/events.tsv" "$WORK/acks-$name.csv" -- \
    "exit_code=$EXIT_CODE" \
    "readyz_during=$(readyz_summary "$during")" \
    "final=$(final_counts "$ready")"
}

# PostgreSQL turns read-only under load, as after a failover to a standby: new sessions of the
# database default to read-only transactions and the sidecar's sessions are cut (it reconnects
# into read-only ones); 6s later the default is reset *without* cutting anyone again, so the
# sidecar has to notice by itself that new sessions may write.
scenario_pg-readonly() {
  echo "==> PostgreSQL database read-only (default_transaction_read_only) for 6s under load"
  [ -n "$PG_BIN" ] || { echo "no PostgreSQL server binaries: skipped"; return 0; }
  local name=pg-readonly
  pg_start
  local db="fault_${name//-/_}"
  runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" "$db"
  local url="postgres://postgres@127.0.0.1:$PG_PORT/$db"
  local su="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  local dir="$WORK/$name"
  mkdir -p "$dir"
  config "$url" "$dir/spool" >"$dir/cfg.yaml"
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  load 20 "$name"
  sleep 4
  psql "$su" -qAt -c "ALTER DATABASE $db SET default_transaction_read_only = on" \
    -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db'" >"$dir/cut.txt"
  sleep 6
  local during
  during=$(readyz)
  psql "$su" -qAt -c "ALTER DATABASE $db RESET default_transaction_read_only"
  wait "$LOAD_PID" || true
  settle
  local ready
  ready=$(readyz)
  stop_serve
  events_pg "$url" >"$dir/events.tsv"
  analyse "$name" "the database turns read-only (default_transaction_read_only = on, the sidecar's $(tr -d '\n' <"$dir/cut.txt") sessions cut) for 6s, then writable again without cutting them" \
    "$dir/events.tsv" "$WORK/acks-$name.csv" -- \
    "exit_code=$EXIT_CODE" \
    "readyz_during=$(readyz_summary "$during")" \
    "final=$(final_counts "$ready")"
}

scenario_pg-restart() {
  echo "==> PostgreSQL stopped (fast) for 6s under load, then started"
  pg_outage pg-restart "PostgreSQL stopped (pg_ctl -m fast) for 6s under load, then started" fast
}

scenario_pg-crash() {
  echo "==> PostgreSQL killed (immediate) for 6s under load, then started"
  pg_outage pg-crash "PostgreSQL stopped with -m immediate (no checkpoint, like a crash) for 6s, then started" immediate
}

# kill -9 under load, restart on the same files, drain, SIGTERM.
kill9() {
  local name=$1 what=$2 paths=$3
  local dir="$WORK/$name"
  mkdir -p "$dir"
  config "sqlite://$dir/trail.db" "$dir/spool" >"$dir/cfg.yaml"
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  "$LOAD" --target "http://$PROXY" --mix faults --paths "$paths" --seconds 12 --requests 1000000 \
    --concurrency 8 --rate "$RATE" --prefix "$name" --out "$WORK/acks-$name.csv" >"$WORK/load-$name.json" &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
  sleep 5
  kill -9 "$SERVE_PID"
  wait "$SERVE_PID" 2>/dev/null || true
  wait "$LOAD_PID" || true
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  settle
  stop_serve
  events_sqlite "$dir/trail.db" >"$dir/events.tsv"
  local verify
  verify=$("$BIN/authtrail" verify --config "$dir/cfg.yaml" 2>&1 | head -n 1 || true)
  analyse "$name" "$what" "$dir/events.tsv" "$WORK/acks-$name.csv" -- \
    "exit_code_after_restart=$EXIT_CODE" "verify=$verify"
}

scenario_kill9-async() {
  echo "==> kill -9 under async load"
  kill9 kill9-async "SIGKILL 5s into async load; restarted on the same files" /v1/sessions
}

scenario_kill9-sync() {
  echo "==> kill -9 under sync load"
  kill9 kill9-sync "SIGKILL 5s into sync load; restarted on the same files" /v1/password/reset
}

scenario_sigterm() {
  echo "==> SIGTERM under load"
  local name=sigterm dir="$WORK/sigterm"
  mkdir -p "$dir"
  config "sqlite://$dir/trail.db" "$dir/spool" >"$dir/cfg.yaml"
  start_serve "$dir/cfg.yaml" "$dir/serve.log"
  load 12 "$name"
  sleep 5
  stop_serve
  wait "$LOAD_PID" || true
  events_sqlite "$dir/trail.db" >"$dir/events.tsv"
  local verify
  verify=$("$BIN/authtrail" verify --config "$dir/cfg.yaml" 2>&1 | head -n 1 || true)
  analyse "$name" "SIGTERM 5s into mixed load: drain, flush, exit" "$dir/events.tsv" "$WORK/acks-$name.csv" -- \
    "exit_code=$EXIT_CODE" "verify=$verify"
}

# `scripts/faults.sh table` only re-renders docs/reliability.md from the rows kept.
scenario_table() { :; }

for s in "${SCENARIOS[@]}"; do
  "scenario_$s"
done

[ "${FAULTS_DOC:-1}" = 1 ] || exit 0
echo "==> docs/reliability.md"
python3 - "$RESULTS" docs/reliability.md "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$RATE" <<'PY'
import json, re, sys, datetime
results, doc, rev, rate = sys.argv[1:5]
rows = [json.loads(l) for l in open(results) if l.strip()]
up = [r for r in rows if r.get("suite") == "upstream"]
st = [r for r in rows if r.get("suite") == "store"]
out = []
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out.append(f"Last run: {stamp}, commit {rev}, `scripts/faults.sh` (load: 8 connections, {rate} req/s).\n")
if up:
    out.append("**Upstream faults** (`tests/fault.rs`, mapped route `/m/*`; unmapped requests get the same answers and no event)\n")
    out.append("| upstream | requests | client saw | events (outcome/reason) | duplicates |")
    out.append("|---|---|---|---|---|")
    for r in up:
        oc = ", ".join(f"{n}× {k}" for k, n in sorted(r["outcomes"].items()))
        out.append(f"| {r['scenario']} | {r['requests']} | {r['client_mapped']} | {oc} | {r['duplicates']} |")
    out.append("")
if st:
    out.append("**Store and process faults** (release `authtrail serve`, demo auth server upstream; `login` is async, `reset` is sync)\n")
    out.append("| scenario | route | sent | client saw | acked (2xx) | acked with event | acked, no event | sync: acked, no attempt | duplicates | notes |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in st:
        notes = "; ".join(f"{k}: {v}" for k, v in r.items() if k not in ("suite", "scenario", "what", "routes", "events_stored"))
        first = True
        for route, c in sorted(r["routes"].items()):
            saw = ", ".join(f"{v}× {k.replace('status_', '')}" for k, v in sorted(c.items()) if k.startswith("status_") or k == "no_response")
            label = f"{r['scenario']}: {r['what']}" if first else ""
            out.append(f"| {label} | {route} | {c.get('sent', 0)} | {saw} | {c.get('acked', 0)} | {c.get('acked_with_event', 0)} | {c.get('acked_without_event', 0)} | {c.get('acked_sync_without_attempt', 0) if '(sync)' in route else '—'} | {c.get('duplicates', 0)} | {notes if first else ''} |")
            first = False
    out.append("")
table = "\n".join(out)
text = open(doc).read()
new = re.sub(r"(<!-- faults:begin -->\n).*?(<!-- faults:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
open(doc, "w").write(new)
print(table)
PY
