-- wrk script for bench_throttle.py: POST a tiny event, count answers by status.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  admitted, throttled, other = 0, 0, 0
end

function response(status, headers, body)
  if status == 200 then
    admitted = admitted + 1
  elseif status == 429 then
    throttled = throttled + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, t, o = 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("admitted")
    t = t + thread:get("throttled")
    o = o + thread:get("other")
  end
  io.write(string.format("admitted: %d\nthrottled: %d\nother: %d\nduration_us: %d\n",
    a, t, o, summary.duration))
end
