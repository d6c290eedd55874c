-- wrk script for benches/compare.py.
--
-- With WRK_POST_BYTES set, every request is a POST of that many bytes (the
-- 1 MiB echo scenario); without it, wrk's plain GET. In both cases done()
-- prints one line "WRKJSON {...}" that compare.py parses: counts, error kinds
-- and latency percentiles in microseconds.

local post_bytes = tonumber(os.getenv("WRK_POST_BYTES") or "")
if post_bytes then
   wrk.method = "POST"
   wrk.body = string.rep("x", post_bytes)
   wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
