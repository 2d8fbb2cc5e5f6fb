--[[ Sliding window counter: the previous window's count, weighted by how much of it still
overlaps the sliding window, plus the current window's count. O(1) memory per limit.

KEYS[1]  the rate-limit key (hash; per window_ms: ':b' window index, ':c' its count,
         ':p' the count of the window before it)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua.
The estimate is prev * (w - elapsed) / w + cur; it is compared as integers,
prev * (w - elapsed) + cur * w against limit * w, so no rounding admits an extra hit.
Cost: every redis.call has a fixed price, so all limits are read with one HMGET and
written with one HSET, and the TTL (two windows from the start of the current one, fixed
while it lasts) is set only when a window starts.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#ARGV - 2) / 2

local function wait_until_fits(limit, w, elapsed, cur, prev, need)
  -- ms from now until prev * (w - e) / w + cur + need <= limit, within this window or the next.
  if cur + need <= limit then
    if prev == 0 then return 0 end
    local e = w - math.floor((limit - cur - need) * w / prev)
    return math.max(0, e - elapsed)
  end
  -- Only the next window can fit it: the current count becomes its previous one.
  if need > limit then return -1 end
  local e = w - math.floor((limit - need) * w / cur)
  return (w - elapsed) + math.max(0, e)
end

local fields = {}
for i = 1, n do
  local window = ARGV[2 + 2 * i]
  fields[3 * i - 2] = window .. ':b'
  fields[3 * i - 1] = window .. ':c'
  fields[3 * i] = window .. ':p'
end
local stored = redis.call('HMGET', key, unpack(fields))

local allowed, retry_after, started = 1, 0, false
local limits, ws, buckets, elapseds, curs, prevs = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local w = tonumber(ARGV[2 + 2 * i])
  local bucket = math.floor(now / w)
  local elapsed = now - bucket * w
  local cur, prev = 0, 0
  local stored_bucket = tonumber(stored[3 * i - 2])
  if stored_bucket == bucket then
    cur, prev = tonumber(stored[3 * i - 1]) or 0, tonumber(stored[3 * i]) or 0
  else
    started = true
    if stored_bucket == bucket - 1 then prev = tonumber(stored[3 * i - 1]) or 0 end
  end
  limits[i], ws[i], buckets[i], elapseds[i], curs[i], prevs[i] =
    limit, w, bucket, elapsed, cur, prev
  if prev * (w - elapsed) + (cur + cost) * w > limit * w then
    allowed = 0
    local wait = wait_until_fits(limit, w, elapsed, cur, prev, cost)
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local values = {}
for i = 1, n do
  local w, elapsed, prev = ws[i], elapseds[i], prevs[i]
  local cur = curs[i]
  if allowed == 1 then
    cur = cur + cost
    values[6 * i - 5], values[6 * i - 4] = fields[3 * i - 2], buckets[i]
    values[6 * i - 3], values[6 * i - 2] = fields[3 * i - 1], cur
    values[6 * i - 1], values[6 * i] = fields[3 * i], prev
  end
  local used = math.ceil((prev * (w - elapsed) + cur * w) / w)
  local left = limits[i] - used
  local whole = 0
  if cur > 0 then
    whole = 2 * w - elapsed
  elseif prev > 0 then
    whole = w - elapsed
  end
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if 2 * w - elapsed > expire then expire = 2 * w - elapsed end
end
if allowed == 1 then
  redis.call('HSET', key, unpack(values))
  -- Within the same windows the expiry is the one set when they started.
  if started then redis.call('PEXPIRE', key, math.max(1, expire)) end
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
