-- Sliding-window counter (Cloudflare's two-bucket estimate) in ONE hash: O(1) memory.
--   fields: w = index of the current fixed window (floor(now / window)), c = its count,
--           p = the count of window w - 1.
--   estimate(now) = p * (window - elapsed) / window + c, elapsed = now - w * window.
-- KEYS[1]  the limiter key (hash-tagged by the caller)
-- ARGV[1]  limit (>= 1)      ARGV[2] window_ms (>= 1)
-- ARGV[3]  cost (>= 1; 0 = read-only peek, nothing is written)
-- ARGV[4]  injected now in ms, or "" to use the Redis server clock (TIME)
-- ARGV[5]  minimum TTL in ms (0 in production; tests with injected time keep keys alive)
-- Returns {allowed, limit, remaining, reset_after_ms, retry_after_ms, used}; reset_after_ms is
-- the time until the estimate is back to zero (c counts until the end of the next window).
-- The hot path (admit in the same window) is HMGET + HINCRBY, with no closures: it runs on
-- every decision, so it is kept as lean as the fixed-window baseline allows.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[4])
end

local cur = math.floor(now / window)
local elapsed = now - cur * window
local state = redis.call('HMGET', key, 'w', 'c', 'p')
local stored_w = tonumber(state[1])
local c, p, same_window = 0, 0, false
if stored_w == cur then
  c = tonumber(state[2]) or 0
  p = tonumber(state[3]) or 0
  same_window = true
elseif stored_w == cur - 1 then
  p = tonumber(state[2]) or 0
end
local weighted = p * (window - elapsed) / window

if cost > 0 and weighted + c + cost <= limit + 1e-9 then
  if same_window then
    c = redis.call('HINCRBY', key, 'c', cost)
  else
    c = cost
    redis.call('HSET', key, 'w', cur, 'c', c, 'p', p)
    -- The state is useless after the end of the next window; that deadline only moves
    -- when the window index does, so the TTL is set once per window, not per call.
    redis.call('PEXPIRE', key, math.max(2 * window - elapsed, tonumber(ARGV[5])))
  end
  local used = math.ceil(weighted + c - 1e-9)
  return {1, limit, math.max(0, limit - used), 2 * window - elapsed, 0, used}
end

local used = math.ceil(weighted + c - 1e-9)
local reset = 0
if c > 0 then
  reset = 2 * window - elapsed
elseif p > 0 then
  reset = window - elapsed
end
if cost == 0 then
  return {0, limit, math.max(0, limit - used), reset, 0, used}
end

-- Denied: nothing is written. Soonest wait after which `cost` fits if nobody else asks.
local retry
if cost > limit then
  retry = window
elseif c + cost <= limit then
  -- p * (window - elapsed - t) / window + c + cost <= limit  (p > 0 here)
  retry = math.ceil(window - elapsed - (limit - c - cost) * window / p - 1e-9)
else
  -- Next window: p' = c, c' = 0; need c * (window - e') / window + cost <= limit.
  local e_next = math.ceil(window - (limit - cost) * window / c - 1e-9)
  retry = (window - elapsed) + math.max(0, e_next)
end
return {0, limit, math.max(0, limit - used), reset, math.max(1, retry), used}
