# Sourced by scripts/bench.sh, scripts/bench/profile.sh and scripts/bench/cpu-ab.sh: the one
# authtrail configuration their mapped cases run (case d of bench.sh), its bench-only secrets,
# a free port on 127.0.0.1, and (profile.sh, cpu-ab.sh) a scratch directory whose processes are
# stopped on exit.

JWT_SECRET=bench-jwt-secret-0123456789abcdef
FP_KEY=bench-fingerprint-key-0123456789

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# case_config FILE UPSTREAM_PORT PORT ADMIN_PORT STORE_URL SPOOL_DIR DELIVERY
# One route, POST /v1/sessions -> auth.login: actor from the verified bearer's `sub` (else the
# body's /username), app from its `app_id` claim, `username` captured, tokens fingerprinted.
# WRITE_AHEAD (default true) is store.spool.write_ahead.
case_config() {
    local file=$1 up_port=$2 port=$3 admin=$4 url=$5 spool=$6 delivery=$7
    cat > "$file" <<EOF
# authtrail configuration of the benchmarks (scripts/bench/case.sh)
listen: 127.0.0.1:$port
upstream: http://127.0.0.1:$up_port
admin: { listen: "127.0.0.1:$admin" }
max_connections: 12000
timeouts: { idle: 300s }
store:
  url: "$url"
  spool: { dir: "$spool", write_ahead: ${WRITE_AHEAD:-true} }
trust: { fingerprint_key: $FP_KEY }
keys:
  bench: { secret: $JWT_SECRET, algorithms: [HS256] }
routes:
  - id: login
    match: { method: POST, path: /v1/sessions }
    event: auth.login
    actor: [ { claim: sub }, { request_body: /username } ]
    app: { claim: app_id }
    outcome: { success: [2xx], failure: [4xx], reason: /error }
    capture: { username: { request_body: /username } }
    delivery: $delivery
EOF
}

# scratch NAME: a fresh directory $T (/tmp/authtrail-NAME.XXXXXX) and an empty $PIDS; on exit,
# every PID in $PIDS gets TERM, then KILL after 10 s, and $T is removed.
scratch() {
    T=$(mktemp -d "/tmp/authtrail-$1.XXXXXX")
    PIDS=()
    trap stop_scratch EXIT
    trap 'exit 130' INT TERM
}

stop_scratch() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
