--[[ Token bucket as GCRA (generic cell rate algorithm): one timestamp per limit, the
theoretical arrival time (TAT) of the next hit. A bucket of `limit` tokens refills one
token every window / limit; a full bucket admits `limit` hits at once.

KEYS[1]  the rate-limit key (string: one record per window, separated by spaces,
         '<window_ms>t<TAT>', the TAT as '<microseconds>' or '<microseconds>+<n>', n / limit
         of a microsecond later; records of windows the policy lacks are kept)
ARGV[1]  cost (integer >= 1)
ARGV[2]  unused (kept so every algorithm takes the same ARGV)
ARGV[3..] pairs (limit, window_ms), all decided together; windows are distinct
Returns  {allowed (0|1), remaining, retry_after_ms, reset_ms, binding limit index (1-based)}
         as in ratelimit_sliding_log.lua; reset_ms is when the bucket is full again.
TATs are exact: window / limit is rarely a whole number of microseconds, and a TAT rounded
to one drifts a little further on every hit of a burst, so remaining came out one too low
(3 per second left 1 after the first hit, not 2) and a burst could be refused a hit that
GCRA admits. So a TAT is whole microseconds plus a remainder in 1/limit of one, and every
comparison is in integers scaled by the limit (exact while window_ms * 1000 * limit stays
below 2^53: up to 2.5 million an hour). A remainder is read as a fraction of the current
limit: one written under another limit is off by less than a microsecond, rounded up when
it does not fit.
A key of another type (the sorted set of the sliding log, before the route changed
algorithm) counts as fresh, and the SET replaces it.
Cost: every redis.call has a fixed price and every write is propagated to the replicas
on its own, so all limits are read with one GET and written, TTL included, with one SET.
]]
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = (#ARGV - 2) / 2

local function divmod(a, b)
  -- Floor division of integers held in doubles: a / b rounds, so the remainder corrects it.
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then return q - 1, r + b end
  if r >= b then return q + 1, r - b end
  return q, r
end

local old_wholes, old_parts = {}, {}
local stored = redis.pcall('GET', key)
if type(stored) == 'string' then
  for window, whole, part in string.gmatch(stored, '(%d+)t(%d+)%+?(%d*)') do
    old_wholes[window], old_parts[window] = whole, part
  end
end

local allowed, retry_after = 1, 0
local wholes, parts, new_wholes, new_parts = {}, {}, {}, {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local period = window * 1000                      -- us for a full bucket to refill
  -- The TAT is whole + part / limit us, 0 <= part < limit; a bucket full by now starts now.
  local whole, part = tonumber(old_wholes[window]), tonumber(old_parts[window]) or 0
  old_wholes[window] = nil                          -- what is left belongs to other policies
  if whole and part >= limit then whole, part = whole + 1, 0 end
  if whole == nil or whole < now then whole, part = now, 0 end
  -- cost hits move the TAT by cost * period / limit us.
  local carry, new_part = divmod(part + cost * period, limit)
  local new_whole = whole + carry
  wholes[i], parts[i], new_wholes[i], new_parts[i] = whole, part, new_whole, new_part
  -- Admitted while the new TAT is at most a full bucket ahead of now; ahead * limit:
  local ahead = (new_whole - period - now) * limit + new_part
  if ahead > 0 then
    allowed = 0
    local wait = math.ceil(ahead / (1000 * limit))
    if wait > retry_after then retry_after = wait end
  end
end

local binding, remaining, reset, expire = 1, nil, 0, 0
local records = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = ARGV[2 + 2 * i]
  local period = window * 1000
  local whole, part = wholes[i], parts[i]
  if allowed == 1 then
    whole, part = new_wholes[i], new_parts[i]
    if part == 0 then
      records[i] = string.format('%st%d', window, whole)
    else
      records[i] = string.format('%st%d+%d', window, whole, part)
    end
  end
  -- Tokens left: whole intervals from the TAT to a full bucket, (period - (TAT - now)) /
  -- (period / limit), scaled by the limit; and the ms until the TAT, rounded up.
  local left = divmod((period - (whole - now)) * limit - part, period)
  local full = math.ceil(((whole - now) * limit + part) / (1000 * limit))
  if remaining == nil or left < remaining or (left == remaining and full > reset) then
    binding, remaining, reset = i, left, full
  end
  if full > expire then expire = full end
end
if allowed == 1 then
  for window, whole in pairs(old_wholes) do
    local part = old_parts[window]
    if part ~= '' then whole = whole .. '+' .. part end
    records[#records + 1] = window .. 't' .. whole
  end
  redis.call('SET', key, table.concat(records, ' '), 'PX', math.max(1, expire))
end
return {allowed, math.max(remaining, 0), retry_after, reset, binding}
