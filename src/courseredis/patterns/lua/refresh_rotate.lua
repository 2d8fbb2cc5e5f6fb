--[[ Rotate a refresh token: single use, atomic, with reuse detection and a retry grace.

KEYS[1]  refresh:<family>   (string, JSON record of the family)
ARGV[1]  the secret the client presented
ARGV[2]  a fresh secret, used only if this call rotates
ARGV[3]  grace in ms: a retry with the previous secret this soon after rotation gets the
         same successor (the client lost the response), not a second branch
ARGV[4]  the family's TTL in ms after a rotation
Returns  {status, record JSON}; status one of
         'rotated'  the presented secret was current; record holds the new current secret
         'retry'    the presented secret was the previous one, within grace; same successor
         'reused'   any other secret of this family: the family is deleted (revoked)
         'unknown'  no such family (expired, revoked, or never issued); record is ''
]]
--#include prelude_now
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown', ''} end
local record = cjson.decode(raw)
local now = now_ms()
local presented = ARGV[1]

if presented == record.current then
  record.previous = record.current
  record.current = ARGV[2]
  record.rotatedAt = now
  record.generation = record.generation + 1
  local encoded = cjson.encode(record)
  redis.call('SET', KEYS[1], encoded, 'PX', ARGV[4])
  return {'rotated', encoded}
end
if presented == record.previous and now - record.rotatedAt <= tonumber(ARGV[3]) then
  return {'retry', raw}
end
redis.call('DEL', KEYS[1])
return {'reused', raw}
