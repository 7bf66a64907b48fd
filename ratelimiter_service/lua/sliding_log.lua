-- Exact sliding log: a ZSET of admitted requests, score = time in ms, member = "ts:nonce:i"
-- (unique, so requests in the same millisecond are never merged). A request at `now` sees the
-- entries with score in (now - window, now]. Memory is O(limit): the caller refuses big limits.
-- KEYS[1]  the limiter key (hash-tagged by the caller)
-- ARGV[1]  limit (>= 1)      ARGV[2] window_ms (>= 1)
-- ARGV[3]  cost (>= 1; 0 = read-only peek, nothing is written)
-- ARGV[4]  nonce, unique per call
-- ARGV[5]  injected now in ms (test mode only; absent: the Redis server clock, TIME)
-- ARGV[6]  minimum TTL in ms (test mode only: keys written with injected time stay alive)
-- Returns {allowed, limit, remaining, reset_after_ms, retry_after_ms, used}.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[5] then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local min_ttl = tonumber(ARGV[6] or 0)
local nonce = ARGV[4]
local horizon = now - window

local count
if cost == 0 then
  count = redis.call('ZCOUNT', key, '(' .. string.format('%d', horizon), '+inf')
else
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', horizon))
  count = redis.call('ZCARD', key)
end

local function reset_after()
  local newest = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. string.format('%d', horizon), 'WITHSCORES', 'LIMIT', 0, 1)
  if newest[2] == nil then return 0 end
  return math.max(0, tonumber(newest[2]) + window - now)
end

if cost == 0 then
  return {0, limit, math.max(0, limit - count), reset_after(), 0, count}
end

if count + cost <= limit then
  local stamp = string.format('%d', now)
  local args = {}
  for i = 1, cost do
    args[#args + 1] = stamp
    args[#args + 1] = stamp .. ':' .. nonce .. ':' .. i
    -- ZADD in chunks: unpack() of a huge table would overflow the Lua C stack.
    if #args >= 1000 or i == cost then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  redis.call('PEXPIRE', key, math.max(window, min_ttl))
  count = count + cost
  return {1, limit, limit - count, window, 0, count}
end

local retry
if cost > limit then
  retry = window
else
  -- The (count + cost - limit) oldest entries must leave the window first.
  local idx = count + cost - limit - 1
  local entry = redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')
  retry = tonumber(entry[2]) + window - now
end
return {0, limit, math.max(0, limit - count), reset_after(), math.max(1, retry), count}
