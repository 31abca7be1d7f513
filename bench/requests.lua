-- wrk script: POSTs requests read from $BENCH_REQUESTS, one per line
-- (path TAB header TAB value ... TAB body), in order, each thread taking every Nth line.
-- It wraps around when the file runs out and reports how often; done() prints one JSON line.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  reqs = {}
  local line_no = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if line_no % nthreads == tid then
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do
        fields[#fields + 1] = field
      end
      local headers = {}
      for k = 2, #fields - 2, 2 do
        headers[fields[k]] = fields[k + 1]
      end
      reqs[#reqs + 1] = wrk.format("POST", fields[1], headers, fields[#fields])
    end
    line_no = line_no + 1
  end
  idx = 0
  wraps = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then
    idx = 1
    wraps = wraps + 1
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"wraps":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, wrapped))
end
