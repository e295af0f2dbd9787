#!/usr/bin/env bash
# Soak: scripts/soak.sh [MINUTES] (default 30). Mixed traffic against a release `authtrail
# serve` (demo routes, SQLite, an admin credential) in front of the demo auth server, all on
# 127.0.0.1, at a fixed rate (SOAK_RATE, default 150 req/s) from examples/reliability_load.rs.
# Samples RSS, open fds, threads and /readyz (queue/spool depth, counters) every
# SOAK_SAMPLE_SECS (default 5) into target/soak/samples.csv, then judges flatness after a
# warm-up (the first 10 % of the run, at least 60 s):
#   - RSS: last-quarter mean within 10 % of first-quarter mean
#   - fds: last-quarter max at most first-quarter max + 16
#   - queue depth: last-quarter max below 1000; spool depth always 0
#   - nothing dropped or failed; SIGTERM exits 0; `verify` passes; events stored = mapped
#     requests + admin reads sent
# Writes target/soak/summary.md and the block between the `soak:` markers in docs/reliability.md.
# Exit 1 when a check fails.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
MINUTES=${1:-30}
RATE=${SOAK_RATE:-150}
INTERVAL=${SOAK_SAMPLE_SECS:-5}
OUT=target/soak
mkdir -p "$OUT"

echo "==> release build"
# NO_BUILD=1 reuses the binaries already in target/release.
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin authtrail --example reliability_load --example demo_auth_server
BIN=$ROOT/target/release

WORK=$(mktemp -d /tmp/authtrail-soak.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/examples/demo_auth_server" >"$WORK/demo.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q listening "$WORK/demo.out" && break; sleep 0.05; done
DEMO=$(awk '/listening/ {print $2}' "$WORK/demo.out")

ADMIN_TOKEN="soak-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
ADMIN_SHA=$(printf %s "$ADMIN_TOKEN" | sha256sum | cut -d' ' -f1)
CFG="$WORK/soak.yaml"
{
  cat <<EOF
listen: 127.0.0.1:0
upstream: http://$DEMO
admin:
  listen: 127.0.0.1:0
  credentials:
    - { name: soak, token_sha256: "$ADMIN_SHA", apps: ["*"], permissions: [read] }
store:
  url: sqlite://$WORK/trail.db
  flush_interval: 50ms
trust:
  fingerprint_key: soak-fingerprint-key-0123456789
keys:
  demo:
    secret: demo-jwt-secret-change-me-0000
    algorithms: [HS256]
EOF
  # The demo's routes, as shipped.
  sed -n '/^routes:/,$p' config/demo.yaml
} >"$CFG"

"$BIN/authtrail" --log-format json serve --config "$CFG" 2>"$WORK/serve.log" &
SERVE=$!
PIDS+=("$SERVE")
line=""
for _ in $(seq 1 300); do
  line=$(grep -m1 '"authtrail serving"' "$WORK/serve.log" || true)
  [ -n "$line" ] && break
  sleep 0.05
done
[ -n "$line" ] || { tail -5 "$WORK/serve.log"; exit 1; }
PROXY=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fields"]["proxy"])' "$line")
ADMIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fields"]["admin"])' "$line")
echo "sidecar pid $SERVE on $PROXY (admin $ADMIN), demo auth on $DEMO; $MINUTES min at $RATE req/s"

SECS=$((MINUTES * 60))
"$BIN/examples/reliability_load" --target "http://$PROXY" --mix soak --admin "http://$ADMIN" \
  --admin-token "$ADMIN_TOKEN" --seconds "$SECS" --requests $((SECS * RATE + 1000)) \
  --concurrency 16 --rate "$RATE" --prefix soak >"$OUT/load.json" &
LOAD=$!
PIDS+=("$LOAD")

SAMPLES="$OUT/samples.csv"
echo "t_s,rss_kb,fds,threads,queue_depth,spool_depth,written,dropped,failed,db_kb" >"$SAMPLES"
start=$(date +%s)
while kill -0 "$LOAD" 2>/dev/null; do
  now=$(date +%s)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVE/status")
  threads=$(awk '/Threads/ {print $2}' "/proc/$SERVE/status")
  fds=$(find "/proc/$SERVE/fd" -mindepth 1 -maxdepth 1 | wc -l)
  ready=$(curl -s --max-time 3 "http://$ADMIN/readyz" || echo '{}')
  db=$(du -sk "$WORK" | cut -f1)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1] or "{}")
e = r.get("events", {})
print(",".join(str(x) for x in [r.get("queue_depth", ""), r.get("spool_depth", ""), e.get("written", ""), e.get("dropped", ""), e.get("failed", "")]))
' "$ready" | sed "s/^/$((now - start)),$rss,$fds,$threads,/; s/\$/,$db/" >>"$SAMPLES"
  sleep "$INTERVAL"
done
wait "$LOAD" || true

# Drain, stop, verify.
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  q=$(curl -s --max-time 3 "http://$ADMIN/readyz" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("queue_depth",0)+r.get("spool_depth",0))' || echo 1)
  [ "$q" = 0 ] && break
  sleep 0.1
done
FINAL=$(curl -s --max-time 3 "http://$ADMIN/readyz" || echo '{}')
kill -TERM "$SERVE"
set +e
wait "$SERVE"
EXIT=$?
set -e
VERIFY=$("$BIN/authtrail" verify --config "$CFG" 2>&1 | head -n 1 || true)
STORED=$(sqlite3 "$WORK/trail.db" "select count(*) from events")
BY_TYPE=$(sqlite3 "$WORK/trail.db" "select type || '=' || count(*) from events group by type order by type" | paste -sd' ')

python3 - "$SAMPLES" "$OUT/load.json" "$EXIT" "$VERIFY" "$STORED" "$BY_TYPE" "$FINAL" "$MINUTES" "$RATE" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" docs/reliability.md "$OUT/summary.md" <<'PY'
import csv, json, re, sys, datetime
samples_f, load_f, exit_code, verify, stored, by_type, final, minutes, rate, rev, doc, summary_f = sys.argv[1:13]
rows = [r for r in csv.DictReader(open(samples_f)) if r["rss_kb"]]
num = lambda r, k: float(r[k]) if r[k] not in ("", "None") else 0.0
load = json.loads(open(load_f).read().strip().splitlines()[-1])
total = float(rows[-1]["t_s"]) if rows else 0
warm = max(60.0, total * 0.1)
steady = [r for r in rows if num(r, "t_s") >= warm]
q = max(1, len(steady) // 4)
first, last = steady[:q], steady[-q:]
mean = lambda rs, k: sum(num(r, k) for r in rs) / max(1, len(rs))
rss_first, rss_last = mean(first, "rss_kb"), mean(last, "rss_kb")
fd_first, fd_last = max((num(r, "fds") for r in first), default=0), max((num(r, "fds") for r in last), default=0)
q_last = max((num(r, "queue_depth") for r in last), default=0)
spool_max = max((num(r, "spool_depth") for r in rows), default=0)
fin = json.loads(final or "{}").get("events", {})
mapped_kinds = {"login_ok", "login_bad_password", "refresh_valid", "refresh_missing", "refresh_forged",
                "deactivate_forged_bearer", "password_reset_request"}
kinds = load["by_kind"]
mapped = sum(sum(v.values()) for k, v in kinds.items() if k in mapped_kinds)
admin_reads = sum(kinds.get("admin_read", {}).values())
no_response = sum(v.get("0", 0) for v in kinds.values())
checks = [
    ("RSS last quarter within 10% of first", rss_last <= rss_first * 1.10, f"{rss_first/1024:.1f} MiB → {rss_last/1024:.1f} MiB ({(rss_last/rss_first-1)*100 if rss_first else 0:+.1f} %)"),
    ("open fds flat (last max ≤ first max + 16)", fd_last <= fd_first + 16, f"{fd_first:.0f} → {fd_last:.0f}"),
    ("queue depth bounded (last-quarter max < 1000)", q_last < 1000, f"max {q_last:.0f}"),
    ("spool never used", spool_max == 0, f"max {spool_max:.0f}"),
    ("nothing dropped or failed", fin.get("dropped", 1) == 0 and fin.get("failed", 1) == 0, f"dropped {fin.get('dropped')}, failed {fin.get('failed')}"),
    ("every request answered", no_response == 0, f"{no_response} without a response"),
    ("SIGTERM exit 0", exit_code == "0", f"exit {exit_code}"),
    ("verify passes", verify.startswith("ok"), verify),
    ("events stored = mapped requests + admin reads", int(stored) == mapped + admin_reads, f"{stored} stored, {mapped} mapped + {admin_reads} admin reads sent"),
]
ok = all(c[1] for c in checks)
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out = [f"Last run: {stamp}, commit {rev}: `scripts/soak.sh {minutes}` ({rate} req/s target, samples every few seconds, warm-up {warm:.0f} s). "
       f"**Verdict: {'PASS' if ok else 'FAIL'}.**\n",
       f"Load: {load['sent']} requests in {load['seconds']} s ({load['rps']} req/s): " +
       ", ".join(f"{k} {sum(v.values())}" for k, v in sorted(kinds.items())) + ".\n",
       f"Stored: {stored} events ({by_type}).\n",
       "| check | result | figures |", "|---|---|---|"]
for name, good, fig in checks:
    out.append(f"| {name} | {'ok' if good else 'FAILED'} | {fig} |")
out.append("")
out.append("| t (s) | RSS (MiB) | fds | threads | queue | spool | written |")
out.append("|---|---|---|---|---|---|---|")
step = max(1, len(rows) // 12)
for r in rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else []):
    out.append(f"| {r['t_s']} | {num(r,'rss_kb')/1024:.1f} | {r['fds']} | {r['threads']} | {r['queue_depth']} | {r['spool_depth']} | {r['written']} |")
out.append(f"\nAll samples: `target/soak/samples.csv` of that run ({len(rows)} rows).\n")
text = "\n".join(out)
open(summary_f, "w").write(text)
d = open(doc).read()
d = re.sub(r"(<!-- soak:begin -->\n).*?(<!-- soak:end -->)", lambda m: m.group(1) + text + "\n" + m.group(2), d, flags=re.S)
open(doc, "w").write(d)
print(text)
sys.exit(0 if ok else 1)
PY
