--[[ Fixed window counter: one count per window, windows aligned to multiples of their length.

KEYS[1]  the rate-limit key (hash; fields '<window_ms>:b' = window index, '<window_ms>:c' = count)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (the nonce of the sliding log; kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is the end of the binding window.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local n = (#ARGV - 2) / 2

local allowed, retry_after = 1, 0
local counts, buckets, ends = {}, {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local w = tonumber(window)
  local bucket = math.floor(now / w)
  local stored = redis.call('HMGET', key, window .. ':b', window .. ':c')
  local count = 0
  if tonumber(stored[1]) == bucket then count = tonumber(stored[2]) or 0 end
  counts[i], buckets[i], ends[i] = count, bucket, (bucket + 1) * w
  if count + cost > limit then
    allowed = 0
    if ends[i] - now > retry_after then retry_after = ends[i] - now end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  if allowed == 1 then
    counts[i] = counts[i] + cost
    redis.call('HSET', key, window .. ':b', buckets[i], window .. ':c', counts[i])
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
  redis.call('PEXPIRE', key, math.max(1, expire))
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
