--[[ Fixed window counter: one count per window, windows aligned to multiples of their length.

KEYS[1]  the rate-limit key (string: one record per window, separated by spaces,
         '<window_ms>f<window index>:<count>'; records of windows the policy lacks are kept)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (the nonce of the sliding log; kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is the end of the binding window.
A key of another type (the sorted set of the sliding log, before the route changed
algorithm) counts as fresh, and the SET replaces it.
Cost: every redis.call has a fixed price and every write is propagated to the replicas
on its own, so all limits are read with one GET and written with one SET. The TTL (the
end of the longest window, fixed while the windows last) is set by that SET when a window
starts, and kept (KEEPTTL) otherwise.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local n = (#ARGV - 2) / 2

local old_buckets, old_counts = {}, {}
local stored = redis.pcall('GET', key)
if type(stored) == 'string' then
  for window, bucket, count in string.gmatch(stored, '(%d+)f(%d+):(%d+)') do
    old_buckets[window], old_counts[window] = bucket, count
  end
end

local allowed, retry_after, started = 1, 0, false
local counts, buckets = {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local w = tonumber(window)
  local bucket = math.floor(now / w)
  local count = 0
  if tonumber(old_buckets[window]) == bucket then
    count = tonumber(old_counts[window])
  else
    started = true
  end
  old_buckets[window] = nil                         -- what is left belongs to other policies
  counts[i], buckets[i] = count, bucket
  if count + cost > limit then
    allowed = 0
    local wait = (bucket + 1) * w - now
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local records = {}
for i = 1, n do
  local window = ARGV[2 + 2 * i]
  local until_end = (buckets[i] + 1) * tonumber(window) - now
  if allowed == 1 then
    counts[i] = counts[i] + cost
    records[i] = string.format('%sf%d:%d', window, buckets[i], counts[i])
  end
  local left = tonumber(ARGV[1 + 2 * i]) - counts[i]
  local whole = until_end
  if counts[i] == 0 then whole = 0 end
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if until_end > expire then expire = until_end end
end
if allowed == 1 then
  for window, bucket in pairs(old_buckets) do
    records[#records + 1] = window .. 'f' .. bucket .. ':' .. old_counts[window]
  end
  local value = table.concat(records, ' ')
  -- Within the same windows the expiry (the latest window end) is the one set when they
  -- started, so only a new window moves it.
  if started then
    redis.call('SET', key, value, 'PX', math.max(1, expire))
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
