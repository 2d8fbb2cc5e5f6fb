--[[ Token bucket as GCRA (generic cell rate algorithm): one timestamp per limit, the
theoretical arrival time (TAT) of the next hit. A bucket of `limit` tokens refills one
token every window / limit; a full bucket admits `limit` hits at once.

KEYS[1]  the rate-limit key (string: one record per window, separated by spaces,
         '<window_ms>t<TAT in microseconds>'; records of windows the policy lacks are kept)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is when the bucket is full again.
TATs are rounded up to the microsecond, so rounding never admits an extra hit.
A key of another type (a hash of an older release, or a sorted set of the sliding log
before the route changed algorithm) counts as fresh, and the SET replaces it.
Cost: every redis.call has a fixed price and every write is propagated to the replicas
on its own, so all limits are read with one GET and written, TTL included, with one SET.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = (#ARGV - 2) / 2

local old = {}
local stored = redis.pcall('GET', key)
if type(stored) == 'string' then
  for window, tat in string.gmatch(stored, '(%d+)t(%d+)') do old[window] = tat end
end

local allowed, retry_after = 1, 0
local tats, new_tats = {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local period = window * 1000                      -- us for a full bucket to refill
  local tat = tonumber(old[window]) or now
  old[window] = nil                                 -- what is left belongs to other policies
  if tat < now then tat = now end
  local new_tat = tat + cost * (period / limit)
  tats[i], new_tats[i] = tat, new_tat
  local allow_at = new_tat - period
  if allow_at > now then
    allowed = 0
    local wait = math.ceil((allow_at - now) / 1000)
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local records = {}
for i = 1, n do
  local period = ARGV[2 + 2 * i] * 1000
  local interval = period / tonumber(ARGV[1 + 2 * i])
  local tat = tats[i]
  if allowed == 1 then
    tat = math.ceil(new_tats[i])
    records[i] = string.format('%st%d', ARGV[2 + 2 * i], tat)
  end
  local left = math.floor((period - (tat - now)) / interval)
  local whole = math.ceil((tat - now) / 1000)
  if remaining == nil or left < remaining or (left == remaining and whole > reset) then
    binding, remaining, reset = i, left, whole
  end
  if whole > expire then expire = whole end
end
if allowed == 1 then
  for window, tat in pairs(old) do records[#records + 1] = window .. 't' .. tat end
  redis.call('SET', key, table.concat(records, ' '), 'PX', math.max(1, expire))
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
