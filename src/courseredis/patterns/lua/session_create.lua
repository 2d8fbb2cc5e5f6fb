--[[ Create a session hash with its TTL in one step (no session without a TTL, ever).

KEYS[1]  session:<sessionId>
ARGV[1]  user id
ARGV[2]  roles, comma-separated
ARGV[3]  TTL in ms
Returns  the creation time in ms (Redis TIME), also stored as last_activity
]]
--#include prelude_now
local now = now_ms()
redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'roles', ARGV[2],
  'created_at', now, 'last_activity', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now
