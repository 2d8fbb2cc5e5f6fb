--[[ Read a session and record activity, writing at most once per throttle interval.

KEYS[1]  session:<sessionId>
ARGV[1]  throttle in ms: last_activity is rewritten only when older than this
ARGV[2]  TTL in ms, renewed together with last_activity (sliding expiry)
Returns  {} when the session does not exist, else the hash as a flat field/value list
         followed by '__written', 0|1
Reading and deciding in one script is one round trip, and most requests write nothing.
]]
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local last = 0
for i = 1, #fields, 2 do
  if fields[i] == 'last_activity' then last = tonumber(fields[i + 1]) end
end
local t = redis.call('TIME')
local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local written = 0
if now - last >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'last_activity', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  for i = 1, #fields, 2 do
    if fields[i] == 'last_activity' then fields[i + 1] = tostring(now) end
  end
  written = 1
end
fields[#fields + 1] = '__written'
fields[#fields + 1] = written
return fields
