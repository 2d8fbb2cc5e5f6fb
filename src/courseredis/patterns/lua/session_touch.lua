--[[ Read a session and record activity, writing at most once per throttle interval.

KEYS[1]  session:<sessionId>
ARGV[1]  throttle in ms: last_activity is rewritten only when older than this
ARGV[2]  TTL in ms, renewed together with last_activity (sliding expiry)
Returns  {} when the session does not exist, else
         {user_id, roles, created_at, last_activity, written}: the fields in this order
         (last_activity as it stands after the call; a missing field is nil), then 1 when
         this call wrote last_activity and renewed the TTL, 0 when it did not
Reading and deciding in one script is one round trip, and most requests write nothing.
The reply names no fields: the caller reads them by position, without a search.
]]
--#include prelude_now
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
local user_id, roles, created_at, last = false, false, false, false
for i = 1, #fields, 2 do
  local name = fields[i]
  if name == 'last_activity' then last = fields[i + 1]
  elseif name == 'user_id' then user_id = fields[i + 1]
  elseif name == 'roles' then roles = fields[i + 1]
  elseif name == 'created_at' then created_at = fields[i + 1] end
end
local now = now_ms()
local written = 0
if now - (tonumber(last) or 0) >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'last_activity', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  last = now
  written = 1
end
return {user_id, roles, created_at, last, written}
