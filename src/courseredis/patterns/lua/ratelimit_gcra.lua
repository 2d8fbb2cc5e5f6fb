--[[ Token bucket as GCRA (generic cell rate algorithm): one timestamp per limit, the
theoretical arrival time (TAT) of the next hit. A bucket of `limit` tokens refills one
token every window / limit; a full bucket admits `limit` hits at once.

KEYS[1]  the rate-limit key (hash; field '<window_ms>:t' = TAT in microseconds)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is when the bucket is full again.
TATs are rounded up to the microsecond, so rounding never admits an extra hit.
Cost: every redis.call has a fixed price, so all limits are read with one HMGET and
written with one HSET.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = (#ARGV - 2) / 2

local fields = {}
for i = 1, n do fields[i] = ARGV[2 + 2 * i] .. ':t' end
local stored = redis.call('HMGET', key, unpack(fields))

local allowed, retry_after = 1, 0
local state = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local period = tonumber(window) * 1000            -- us for a full bucket to refill
  local interval = period / limit                   -- us per token
  local tat = tonumber(stored[i]) or now
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - period
  state[i] = {limit = limit, window = window, period = period, interval = interval,
    tat = tat, new_tat = new_tat}
  if allow_at > now then
    allowed = 0
    local wait = math.ceil((allow_at - now) / 1000)
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local values = {}
for i = 1, n do
  local s = state[i]
  local tat = s.tat
  if allowed == 1 then
    tat = math.ceil(s.new_tat)
    values[2 * i - 1], values[2 * i] = fields[i], string.format('%d', tat)
  end
  local left = math.floor((s.period - (tat - now)) / s.interval)
  local whole = math.ceil((tat - now) / 1000)
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if whole > expire then expire = whole end
end
if allowed == 1 then
  redis.call('HSET', key, unpack(values))
  redis.call('PEXPIRE', key, math.max(1, expire))
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
