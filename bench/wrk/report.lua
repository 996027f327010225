-- wrk reporting script: after the run, one machine-readable line with the request count,
-- errors and latency percentiles (microseconds), read by bench/run. Usable on its own:
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/report.lua http://127.0.0.1:8080/2k
-- It defines no request() function, so wrk keeps sending one pre-built request (fast path).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
