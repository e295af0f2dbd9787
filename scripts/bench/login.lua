-- wrk script of scripts/bench.sh: the same JSON login POST for every case, with the HS256
-- bearer token from BENCH_BEARER, and one machine-readable summary line at the end
-- (latencies in microseconds).
wrk.method = "POST"
wrk.body = '{"username":"alice","password":"correct horse battery staple"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "wrk/4 authtrail-bench"
local bearer = os.getenv("BENCH_BEARER")
if bearer and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50=%d p99=%d p999=%d max=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
