-- GCRA (generic cell rate algorithm): one string key holding the theoretical arrival time
-- (TAT, ms, fractional). Emission interval T = window / limit; burst = limit, so a fresh key
-- admits `limit` at once and then one request every T. A request of `cost` at `now` is
-- admitted when max(TAT, now) + cost * T - now <= window.
-- KEYS[1]  the limiter key (hash-tagged by the caller)
-- ARGV[1]  limit (>= 1)      ARGV[2] window_ms (>= 1)
-- ARGV[3]  cost (>= 1; 0 = read-only peek, nothing is written)
-- ARGV[4]  injected now in ms (test mode only; absent: the Redis server clock, TIME)
-- ARGV[5]  minimum TTL in ms (test mode only: keys written with injected time stay alive)
-- Returns {allowed, limit, remaining, reset_after_ms, retry_after_ms, used}; an admit that
-- leaves some quota returns the short {remaining, reset_after_ms} (see sliding_window.lua).
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local min_ttl = tonumber(ARGV[5] or 0)
local interval = window / limit
-- Float slack: TATs are sums of fractional intervals.
local eps = 1e-6

local tat = tonumber(redis.call('GET', key)) or now
if tat < now then tat = now end

if cost == 0 then
  local used = math.ceil((tat - now) / interval - eps)
  return {0, limit, math.max(0, limit - used), math.ceil(tat - now - eps), 0, used}
end

local new_tat = tat + cost * interval
if new_tat - now <= window + eps then
  local ttl = math.max(math.ceil(new_tat - now), 1, min_ttl)
  -- The TTL formatted as an integer: a Lua number passed to redis.call is formatted as a float.
  redis.call('SET', key, string.format('%.17g', new_tat), 'PX', string.format('%d', ttl))
  local used = math.ceil((new_tat - now) / interval - eps)
  if used < limit then
    return {limit - used, math.ceil(new_tat - now - eps)} -- the short admit (see the header)
  end
  return {1, limit, math.max(0, limit - used), math.ceil(new_tat - now - eps), 0, used}
end

local retry
if cost > limit then
  retry = window
else
  retry = math.ceil(new_tat - window - now - eps)
end
local used = math.ceil((tat - now) / interval - eps)
return {0, limit, math.max(0, limit - used), math.ceil(tat - now - eps), math.max(1, retry), used}
