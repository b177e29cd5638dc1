-- wrk script for the warm-up runs: same request as post.lua, but it also counts responses
-- carrying X-Amz-Function-Error. Lambda reports a failed *function* as 200 + that header,
-- which wrk would count as a success. Counting costs ~10 % of wrk's throughput, so the
-- measured runs use the plain post.lua and only the warm-ups pay for the check.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  function_errors = 0
end

function response(status, headers, body)
  for name, _ in pairs(headers) do
    if string.lower(name) == "x-amz-function-error" then
      function_errors = function_errors + 1
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("function_errors")
  end
  io.write(string.format("function_errors: %d\n", total))
end
