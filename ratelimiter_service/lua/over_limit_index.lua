-- The over-limit index: a sorted set of limiter key names whose quota is used up, scored by
-- the Redis time (ms) at which their state resets. `GET /v1/keys?over_limit=true` reads it
-- instead of scanning the keyspace, so a flood of keys cannot blind it. It holds at most
-- OVER_LIMIT_INDEX_MAX members: adding a new one drops those already reset, then, if still
-- full, those that reset soonest. Prepended to each decision script (which call it with
-- KEYS[2] after a decision that leaves nothing remaining), and run alone on Redis Cluster,
-- where the index lives in another slot than the limiter key: KEYS[1] the index,
-- ARGV[1] the limiter key name, ARGV[2] ms until it resets.
local function index_over_limit(index, member, reset_after_ms)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  if redis.call('ZADD', index, now + math.max(reset_after_ms, 1), member) == 1 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
    local excess = redis.call('ZCARD', index) - OVER_LIMIT_INDEX_MAX
    if excess > 0 then
      redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
    end
  end
end
