-- ember's one throttle decision, atomic on Redis's own clock (see throttle/redis.py).
-- KEYS[1..n]: rate-limit keys; KEYS[n+1]: the concurrency pool (when ARGV[2] >= 0).
-- ARGV: n, pool limit (-1: no pool), lease name, lease ttl (us), cost,
--       then per check: algorithm, limit, period (us), burst (0 for window algorithms).
-- Reply: {0} admitted without checks; {0, capacity, remaining, reset_us, 0} admitted;
--        {i, capacity, remaining, reset_us, retry_us} refused by check i (1-based);
--        {-1, ...} refused by the pool (the rest: the tightest rate decision, if any).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function fmt(x) return string.format('%.17g', x) end
local function ms(us) return string.format('%d', math.ceil(us / 1000) + 1000) end

local function fixed(key, limit, period, burst, cost, token)
  local window = math.floor(now / period)
  local h = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(h[1]) == window then count = tonumber(h[2]) end
  local reset = (window + 1) * period - now
  local ok = count + cost <= limit
  local remaining = limit - count
  local retry = 0
  if ok then remaining = remaining - cost else retry = reset end
  return ok, remaining, reset, retry, function()
    redis.call('HSET', key, 'w', fmt(window), 'c', count + cost)
    redis.call('PEXPIRE', key, ms(reset))
  end
end

local function log(key, limit, period, burst, cost, token)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - period))
  local held = redis.call('ZCARD', key)
  local ok = held + cost <= limit
  local remaining, reset, retry = limit - held, period, 0
  if ok then
    remaining = remaining - cost
  else
    local at = held - limit + cost - 1
    local first = redis.call('ZRANGE', key, at, at, 'WITHSCORES')
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    retry = tonumber(first[2]) + period - now
    reset = tonumber(last[2]) + period - now
  end
  return ok, remaining, reset, retry, function()
    for i = 1, cost do
      redis.call('ZADD', key, fmt(now), fmt(now) .. ':' .. i .. ':' .. token)
    end
    redis.call('PEXPIRE', key, ms(period))
  end
end

local function sliding(key, limit, period, burst, cost, token)
  local window = math.floor(now / period)
  local h = redis.call('HMGET', key, 'w', 'c', 'p')
  local w = tonumber(h[1])
  local curr, prev = 0, 0
  if w == window then
    curr, prev = tonumber(h[2]), tonumber(h[3])
  elseif w == window - 1 then
    prev = tonumber(h[2])
  end
  local elapsed = now - window * period
  local estimate = prev * (period - elapsed) / period + curr
  local ok = estimate + cost <= limit
  local remaining = limit - estimate
  local reset = period - elapsed
  if curr > 0 then reset = reset + period end
  local retry = 0
  if ok then
    remaining = remaining - cost
  elseif curr + cost > limit then
    retry = (period - elapsed) + (1 - (limit - cost) / curr) * period
  else
    retry = (period - elapsed) - (limit - curr - cost) * period / prev
  end
  return ok, math.floor(remaining), reset, math.max(0, retry), function()
    redis.call('HSET', key, 'w', fmt(window), 'c', curr + cost, 'p', prev)
    redis.call('PEXPIRE', key, ms(2 * period))
  end
end

local function bucket(key, limit, period, burst, cost, token)
  local rate = limit / period
  local h = redis.call('HMGET', key, 't', 'ts')
  local tokens, ts = tonumber(h[1]), tonumber(h[2])
  if tokens == nil or ts == nil then tokens, ts = burst, now end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
  end
  local ok = tokens >= cost
  local left, retry = tokens, 0
  if ok then left = tokens - cost else retry = (cost - tokens) / rate end
  return ok, math.floor(left), (burst - left) / rate, retry, function()
    redis.call('HSET', key, 't', fmt(left), 'ts', fmt(now))
    redis.call('PEXPIRE', key, ms(burst / rate))
  end
end

local function gcra(key, limit, period, burst, cost, token)
  local interval = period / limit
  local tolerance = burst * interval
  local tat = tonumber(redis.call('GET', key)) or now
  local base = math.max(tat, now)
  local new = base + cost * interval
  local ok = new - now <= tolerance + 1e-9 * interval
  local after, retry = base, 0
  if ok then after = new else retry = new - tolerance - now end
  local remaining = math.floor((tolerance - (after - now)) / interval + 1e-9)
  return ok, remaining, after - now, retry, function()
    redis.call('SET', key, fmt(new), 'PX', ms(new - now))
  end
end

local algorithms = {
  ['fixed-window'] = fixed, ['sliding-log'] = log, ['sliding-window'] = sliding,
  ['token-bucket'] = bucket, ['leaky-bucket'] = gcra,
}

local n = tonumber(ARGV[1])
local pool_limit = tonumber(ARGV[2])
local lease = ARGV[3]
local ttl = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local commits = {}
local tightest = nil
for i = 1, n do
  local at = 5 + (i - 1) * 4
  local limit, period, burst = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local capacity = limit
  if burst > 0 then capacity = burst end
  local ok, remaining, reset, retry, commit =
    algorithms[ARGV[at + 1]](KEYS[i], limit, period, capacity, cost, lease)
  local answer = {0, capacity, math.max(0, remaining), math.ceil(reset), math.ceil(retry)}
  if not ok then
    answer[1] = i
    return answer
  end
  if tightest == nil or answer[3] < tightest[3] then tightest = answer end
  commits[i] = commit
end
if pool_limit >= 0 then
  local pool = KEYS[n + 1]
  redis.call('ZREMRANGEBYSCORE', pool, '-inf', fmt(now))
  if pool_limit == 0 or redis.call('ZCARD', pool) >= pool_limit then
    if tightest == nil then return {-1} end
    tightest[1] = -1
    return tightest
  end
  redis.call('ZADD', pool, fmt(now + ttl), lease)
  if redis.call('PTTL', pool) < math.ceil(ttl / 1000) + 1000 then
    redis.call('PEXPIRE', pool, ms(ttl))
  end
end
for i = 1, n do commits[i]() end
if tightest == nil then return {0} end
return tightest
