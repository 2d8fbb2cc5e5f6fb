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
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
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

local allowed, retry_after = 1, 0
local state = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local w = tonumber(window)
  local bucket = math.floor(now / w)
  local elapsed = now - bucket * w
  local stored = redis.call('HMGET', key, window .. ':b', window .. ':c', window .. ':p')
  local cur, prev = 0, 0
  local stored_bucket = tonumber(stored[1])
  if stored_bucket == bucket then
    cur, prev = tonumber(stored[2]) or 0, tonumber(stored[3]) or 0
  elseif stored_bucket == bucket - 1 then
    prev = tonumber(stored[2]) or 0
  end
  state[i] = {limit = limit, window = window, w = w, bucket = bucket, elapsed = elapsed,
    cur = cur, prev = prev}
  if prev * (w - elapsed) + (cur + cost) * w > limit * w then
    allowed = 0
    local wait = wait_until_fits(limit, w, elapsed, cur, prev, cost)
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
for i = 1, n do
  local s = state[i]
  if allowed == 1 then
    s.cur = s.cur + cost
    redis.call('HSET', key, s.window .. ':b', s.bucket, s.window .. ':c', s.cur,
      s.window .. ':p', s.prev)
  end
  local used = math.ceil((s.prev * (s.w - s.elapsed) + s.cur * s.w) / s.w)
  local left = s.limit - used
  local whole = 0
  if s.cur > 0 then
    whole = 2 * s.w - s.elapsed
  elseif s.prev > 0 then
    whole = s.w - s.elapsed
  end
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if 2 * s.w - s.elapsed > expire then expire = 2 * s.w - s.elapsed end
end
if allowed == 1 then
  redis.call('PEXPIRE', key, math.max(1, expire))
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
