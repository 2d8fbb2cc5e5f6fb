--[[ Sliding window log: exact sliding windows, one sorted-set member per admitted hit.

KEYS[1]  the rate-limit key (sorted set; member = hit id, score = hit time in microseconds)
ARGV[1]  cost: hits this request counts for (integer >= 1)
ARGV[2]  nonce: random per call, so two hits are distinct members
         (member = microseconds within the millisecond .. nonce [.. ':' .. j for j > 1])
ARGV[3..] pairs (limit, window_ms), all decided together: the request is admitted only
          when every limit admits it, and then counts against every window
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         remaining: of the binding limit (the one with the fewest left), after this hit;
         retry_after_ms: 0 when allowed, else when the request would be admitted (rounded up);
         reset_ms: when, with no more hits, the binding limit is whole again (rounded up).
Times come from Redis TIME: every client and gateway shares one clock. Scores keep its full
microsecond: with millisecond scores a hit late in its millisecond left the window up to
1 ms early, so limit + 1 hits could pass in a span just under the window.
A key of another type (the string of another algorithm, before the route changed to this
one) counts as fresh: it is deleted.
Cost: every redis.call has a fixed price. After the trim every member is inside the
longest window, so its count is ZCARD; the hits are added with one ZADD; the TTL moves only
when the newest hit does, so a refusal leaves it alone. An admitted hit is the newest (a
server clock stepped back aside, which shortens reset and TTL by the step), so only a
refusal reads the newest back.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local nonce = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local n = (#ARGV - 2) / 2
local longest = 0
for i = 1, n do
  local window = tonumber(ARGV[2 + 2 * i]) * 1000
  if window > longest then longest = window end
end
-- A hit at time s is inside a window w while s > now - w. (Numbers go to redis.call whole,
-- but Lua's own tostring keeps 14 digits: microsecond bounds are formatted with %d.)
if type(redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now - longest)) == 'table' then
  redis.call('DEL', key)  -- WRONGTYPE: the only error a trim can raise
end

local allowed = 1
local retry_after = 0
local counts = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i]) * 1000
  local count
  if window == longest then
    count = redis.call('ZCARD', key)
  else
    count = redis.call('ZCOUNT', key, string.format('(%d', now - window), '+inf')
  end
  counts[i] = count
  if count + cost > limit then
    allowed = 0
    -- Admitted once enough of the oldest hits have left the window.
    local leaving = count + cost - limit
    local hit = redis.call('ZRANGEBYSCORE', key, string.format('(%d', now - window), '+inf',
      'WITHSCORES', 'LIMIT', leaving - 1, 1)
    local wait = math.ceil((tonumber(hit[2]) + window - now) / 1000)
    if wait > retry_after then retry_after = wait end
  end
end

if allowed == 1 then
  -- Members must be distinct within the key (an equal one would move an older hit):
  -- microseconds within the millisecond and the caller's random nonce make a clash
  -- vanishingly rare, in few bytes (memory grows with them).
  local stamp = (now % 1000) .. nonce
  if cost == 1 then
    redis.call('ZADD', key, now, stamp)
  else
    local hits = {now, stamp}
    for j = 2, cost do
      hits[2 * j - 1], hits[2 * j] = now, stamp .. ':' .. j
    end
    redis.call('ZADD', key, unpack(hits))
  end
  redis.call('PEXPIRE', key, math.ceil(longest / 1000))
end

local newest = now
if allowed == 0 then
  newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
end
local binding, remaining, reset = 1, nil, 0
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i]) * 1000
  local left = limit - counts[i] - (allowed * cost)
  local whole = 0
  if newest and newest > now - window then
    whole = math.ceil((newest + window - now) / 1000)
  end
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
