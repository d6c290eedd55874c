-- wrk script for benches/compare.py.
--
-- With WRK_POST_BYTES set, every request is a POST of that many bytes of "x"
-- (the upload scenarios); without it, wrk's plain GET. With WRK_CHUNK_BYTES
-- set too, the body goes with Transfer-Encoding: chunked in chunks of that
-- size: wrk.format always adds a Content-Length to a body, so request()
-- returns a request built here by hand (the head from wrk.format with no body,
-- then the chunk framing). In every case done() prints one line
-- "WRKJSON {...}" that compare.py parses: counts, error kinds and latency
-- percentiles in microseconds.

local post_bytes = tonumber(os.getenv("WRK_POST_BYTES") or "")
local chunk_bytes = tonumber(os.getenv("WRK_CHUNK_BYTES") or "")

local function chunked_request()
   local headers = {}
   for name, value in pairs(wrk.headers) do
      headers[name] = value
   end
   headers["Content-Type"] = "application/octet-stream"
   headers["Transfer-Encoding"] = "chunked"
   -- No body argument and no wrk.body: wrk.format writes no Content-Length.
   local parts = { wrk.format("POST", nil, headers, nil) }
   local full = string.rep("x", chunk_bytes)
   local left = post_bytes
   while left > 0 do
      local n = math.min(left, chunk_bytes)
      parts[#parts + 1] = string.format("%x\r\n", n)
      parts[#parts + 1] = n == chunk_bytes and full or string.rep("x", n)
      parts[#parts + 1] = "\r\n"
      left = left - n
   end
   parts[#parts + 1] = "0\r\n\r\n"
   return table.concat(parts)
end

if post_bytes and chunk_bytes then
   local raw = nil
   function request()
      if raw == nil then
         raw = chunked_request()
      end
      return raw
   end
elseif post_bytes then
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
