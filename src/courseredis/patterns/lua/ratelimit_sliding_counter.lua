--[[ Sliding window counter: the previous window's count, weighted by how much of it still
overlaps the sliding window, plus the current window's count. O(1) memory per limit.

KEYS[1]  the rate-limit key (string: one record per window, separated by spaces,
         '<window_ms>s<window index>:<its count>:<the count of the window before it>';
         records of windows the policy lacks are kept)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua.
The estimate is prev * (w - elapsed) / w + cur; it is compared as integers,
prev * (w - elapsed) + cur * w against limit * w, so no rounding admits an extra hit.
A key of another type (the sorted set of the sliding log, before the route changed
algorithm) counts as fresh, and the SET replaces it.
Cost: every redis.call has a fixed price and every write is propagated to the replicas
on its own, so all limits are read with one GET and written with one SET. The TTL (two
windows from the start of the current one, fixed while it lasts) is set by that SET when
a window starts, and kept (KEEPTTL) otherwise.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
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

local old_buckets, old_curs, old_prevs = {}, {}, {}
local stored = redis.pcall('GET', key)
if type(stored) == 'string' then
  for window, bucket, cur, prev in string.gmatch(stored, '(%d+)s(%d+):(%d+):(%d+)') do
    old_buckets[window], old_curs[window], old_prevs[window] = bucket, cur, prev
  end
end

local allowed, retry_after, started = 1, 0, false
local buckets, curs, prevs = {}, {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local w = tonumber(window)
  local bucket = math.floor(now / w)
  local elapsed = now - bucket * w
  local cur, prev = 0, 0
  local stored_bucket = tonumber(old_buckets[window])
  if stored_bucket == bucket then
    cur, prev = tonumber(old_curs[window]), tonumber(old_prevs[window])
  else
    started = true
    if stored_bucket == bucket - 1 then prev = tonumber(old_curs[window]) end
  end
  old_buckets[window] = nil                         -- what is left belongs to other policies
  buckets[i], curs[i], prevs[i] = bucket, cur, prev
  if prev * (w - elapsed) + (cur + cost) * w > limit * w then
    allowed = 0
    local wait = wait_until_fits(limit, w, elapsed, cur, prev, cost)
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local records = {}
for i = 1, n do
  local window = ARGV[2 + 2 * i]
  local w = tonumber(window)
  local elapsed, prev = now - buckets[i] * w, prevs[i]
  local cur = curs[i]
  if allowed == 1 then
    cur = cur + cost
    records[i] = string.format('%ss%d:%d:%d', window, buckets[i], cur, prev)
  end
  local used = math.ceil((prev * (w - elapsed) + cur * w) / w)
  local left = tonumber(ARGV[1 + 2 * i]) - used
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
  for window, bucket in pairs(old_buckets) do
    records[#records + 1] = window .. 's' .. bucket .. ':' .. old_curs[window] .. ':'
      .. old_prevs[window]
  end
  local value = table.concat(records, ' ')
  -- Within the same windows the expiry is the one set when they started.
  if started then
    redis.call('SET', key, value, 'PX', math.max(1, expire))
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
