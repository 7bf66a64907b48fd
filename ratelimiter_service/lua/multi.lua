-- Several limits decided in one atomic run: admitted only if every enforced limit admits, and
-- then every limit is charged; if one denies, none is. Each limit is decided by its
-- algorithm's own script body (prepended as alg_sw, alg_log, alg_gcra): a read-only peek
-- (cost 0) tells whether it would admit (remaining >= cost), then the charge runs the same
-- body with the cost. The caller puts every key in one cluster slot and no key twice.
-- KEYS[1..n]  the limiter keys; KEYS[n+1] the over-limit index (absent on Redis Cluster)
-- ARGV[1]     n
-- ARGV[2..]   per limit i, 6 values from 2 + 6 * (i - 1): algorithm code (sw|log|gcra),
--             limit, window_ms, cost, nonce (sliding_log), enforced (1; 0 = shadow policy)
-- ARGV[2+6n], ARGV[3+6n]  injected now and minimum TTL (test mode only)
-- Returns {all_admitted, then per limit: admitted, limit, remaining, reset_after_ms,
-- retry_after_ms, used}.
local n = tonumber(ARGV[1])
local algorithms = {sw = alg_sw, log = alg_log, gcra = alg_gcra}
local now_ms, min_ttl = ARGV[2 + 6 * n], ARGV[3 + 6 * n]

local function run(i, cost)
  local b = 2 + 6 * (i - 1)
  local code = ARGV[b]
  local args = {ARGV[b + 1], ARGV[b + 2], cost}
  if code == 'log' then args[#args + 1] = ARGV[b + 4] end
  if now_ms then
    args[#args + 1] = now_ms
    args[#args + 1] = min_ttl
  end
  local r = algorithms[code]({KEYS[i]}, args)
  if #r == 2 then -- a short admit: {remaining, reset_after_ms}
    local limit = tonumber(ARGV[b + 1])
    return {1, limit, r[1], r[2], 0, limit - r[1]}
  end
  return r
end

local function cost_of(i) return tonumber(ARGV[2 + 6 * (i - 1) + 3]) end
local function enforced(i) return ARGV[2 + 6 * (i - 1) + 5] == '1' end

local peeks, all = {}, true
for i = 1, n do
  peeks[i] = run(i, '0')
  if enforced(i) and peeks[i][3] < cost_of(i) then all = false end
end

local reply = {all and 1 or 0}
for i = 1, n do
  local fits = peeks[i][3] >= cost_of(i)
  local r
  if (all and fits) or not fits then
    -- Charged (all admit), or denied by its own script: its retry time, nothing kept.
    r = run(i, tostring(cost_of(i)))
  else
    r = peeks[i]
    r[1] = 1 -- would admit, but another limit denied: not charged
  end
  if KEYS[n + 1] and all and fits and r[3] == 0 then
    index_over_limit(KEYS[n + 1], KEYS[i], r[4])
  end
  for j = 1, 6 do reply[#reply + 1] = r[j] end
end
return reply
