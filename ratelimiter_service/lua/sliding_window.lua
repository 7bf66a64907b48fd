-- Sliding-window counter (Cloudflare's two-bucket estimate) in ONE hash: O(1) memory.
--   The hash holds one field, named by the index of the current fixed window
--   w = floor(now / window); its value packs both counts as p * 1e8 + c, where c counts
--   window w and p counts window w - 1.
--   estimate(now) = p * (window - elapsed) / window + c, elapsed = now - w * window.
-- Why packed: the hot path (a decision in the same window as the last one) is TIME and one
-- HINCRBY whose reply carries both counts, with no read before the write, the same number of
-- commands as a bare fixed window. A denial takes its increment back within the same atomic
-- run (replicas and the AOF see a denial as a write pair: the price of the fast admit).
-- While a call runs, p <= limit and c <= 2 * limit, so limits up to 49,999,999 keep the two
-- counts apart and the packed value below 2^53 (exact in Lua numbers); Policy enforces it.
-- KEYS[1]  the limiter key (hash-tagged by the caller)
-- ARGV[1]  limit (>= 1)      ARGV[2] window_ms (>= 1)
-- ARGV[3]  cost (>= 1; 0 = read-only peek, nothing is written)
-- ARGV[4]  injected now in ms (test mode only; absent: the Redis server clock, TIME)
-- ARGV[5]  minimum TTL in ms (test mode only: keys written with injected time stay alive)
-- Returns {allowed, limit, remaining, reset_after_ms, retry_after_ms, used}; reset_after_ms is
-- the time until the estimate is back to zero (c counts until the end of the next window).
-- An admit that leaves some quota returns the short {remaining, reset_after_ms} instead:
-- allowed, the limit, no retry and used = limit - remaining go without saying, and a reply
-- of two integers costs Redis less than one of six (every caller expands it).
local PACK = 100000000
local key = KEYS[1]
local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local cost = ARGV[3] + 0
local now = ARGV[4]
if now then
  now = now + 0
else
  local t = redis.call('TIME')
  local us = t[2] + 0
  now = t[1] * 1000 + (us - us % 1000) / 1000
end
local elapsed = now % window
local w = (now - elapsed) / window
-- Field names formatted as integers: a Lua number passed to redis.call is formatted as a
-- float (%.17g), the costliest step of a decision. The same digits below 1e14.
local field = string.format('%d', w)

local p, c -- the counts of windows w - 1 and w, including this call's cost when admitted
local admitted = false
if cost > 0 and cost <= limit then
  local v = redis.call('HINCRBY', key, field, ARGV[3])
  local first = v == cost -- window w's field was absent (a packed 0 is never stored)
  if first then
    -- Window w - 1's count becomes p; older fields, if any, are dropped with the key.
    p = (tonumber(redis.call('HGET', key, string.format('%d', w - 1))) or 0) % PACK
    c = cost
  else
    c = v % PACK
    p = (v - c) / PACK
  end
  admitted = p * (window - elapsed) / window + c <= limit + 1e-9
  if not admitted then
    c = c - cost
  end
  if first then
    redis.call('DEL', key)
    redis.call('HSET', key, field, string.format('%d', p * PACK + c))
    -- The state is useless after the end of the next window; that deadline only moves when
    -- the window index does, so the TTL is set once per window, not per call.
    redis.call('PEXPIRE', key, math.max(2 * window - elapsed, (ARGV[5] or 0) + 0))
  elseif not admitted then
    redis.call('HINCRBY', key, field, -cost)
  end
else
  local state = redis.call('HMGET', key, field, string.format('%d', w - 1))
  local v = tonumber(state[1])
  if v then
    c = v % PACK
    p = (v - c) / PACK
  else
    c = 0
    p = (tonumber(state[2]) or 0) % PACK
  end
end

local weighted = p * (window - elapsed) / window
local used = math.ceil(weighted + c - 1e-9)
if admitted then
  if used < limit then
    return {limit - used, 2 * window - elapsed} -- the short admit (see the header)
  end
  return {1, limit, 0, 2 * window - elapsed, 0, used}
end

local reset = 0
if c > 0 then
  reset = 2 * window - elapsed
elseif p > 0 then
  reset = window - elapsed
end
if cost == 0 then
  return {0, limit, math.max(0, limit - used), reset, 0, used}
end

-- Denied: nothing is kept. Soonest wait after which `cost` fits if nobody else asks.
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
