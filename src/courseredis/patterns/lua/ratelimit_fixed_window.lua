--[[ Fixed window counter: one count per window, windows aligned to multiples of their length.

KEYS[1]  the rate-limit key (hash; fields '<window_ms>:b' = window index, '<window_ms>:c' = count)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (the nonce of the sliding log; kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is the end of the binding window.
Cost: every redis.call has a fixed price, so all limits are read with one HMGET and
written with one HSET, and the TTL (the end of the longest window, fixed while the windows
last) is set only when a window starts.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#ARGV - 2) / 2

local fields = {}
for i = 1, n do
  local window = ARGV[2 + 2 * i]
  fields[2 * i - 1] = window .. ':b'
  fields[2 * i] = window .. ':c'
end
local stored = redis.call('HMGET', key, unpack(fields))

local allowed, retry_after, started = 1, 0, false
local counts, buckets, ends = {}, {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local w = tonumber(ARGV[2 + 2 * i])
  local bucket = math.floor(now / w)
  local count = 0
  if tonumber(stored[2 * i - 1]) == bucket then
    count = tonumber(stored[2 * i]) or 0
  else
    started = true
  end
  counts[i], buckets[i], ends[i] = count, bucket, (bucket + 1) * w
  if count + cost > limit then
    allowed = 0
    if ends[i] - now > retry_after then retry_after = ends[i] - now end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local values = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  if allowed == 1 then
    counts[i] = counts[i] + cost
    values[4 * i - 3], values[4 * i - 2] = fields[2 * i - 1], buckets[i]
    values[4 * i - 1], values[4 * i] = fields[2 * i], counts[i]
  end
  local left = limit - counts[i]
  local whole = ends[i] - now
  if counts[i] == 0 then whole = 0 end
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if ends[i] - now > expire then expire = ends[i] - now end
end
if allowed == 1 then
  redis.call('HSET', key, unpack(values))
  -- Within the same windows the expiry (the latest window end) is the one set when they
  -- started, so only a new window moves it.
  if started then redis.call('PEXPIRE', key, math.max(1, expire)) end
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
