--[[ Rotate a refresh token: single use, atomic, reuse detection among the issued secrets
only, and a retry grace.

The record holds digests (SHA-256, hex) of secrets, never a secret: the caller hashes the
secret it was shown, and this script compares digests.

KEYS[1]  refresh:<family>   (string, JSON record of the family)
ARGV[1]  digest of the secret the client presented
ARGV[2]  digest of the successor secret, used only if this call rotates
ARGV[3]  the nonce the successor was derived with (kept, so a retry derives it again)
ARGV[4]  grace in ms: a retry with the previous secret this soon after rotation gets the
         same successor (the client lost the response), not a second branch
ARGV[5]  the family's TTL in ms after a rotation
ARGV[6]  how many rotated-out digests the record keeps (reuse is recognised among them)
Returns  {status, record JSON}; status one of
         'rotated'  the presented secret was current; the record holds the successor's
                    digest and nonce
         'retry'    the presented secret was the previous one, within grace; same successor
         'reused'   a secret this family issued and rotated out: the family is deleted
         'unknown'  no such family, or a secret it never issued (a guess): nothing changes;
                    record is ''
]]
--#include prelude_now
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown', ''} end
local record = cjson.decode(raw)
local presented = ARGV[1]
local spent = record.spentDigests or {}

if presented == record.secretDigest then
  local now = now_ms()
  table.insert(spent, 1, record.secretDigest)
  for i = #spent, tonumber(ARGV[6]) + 1, -1 do spent[i] = nil end
  record.spentDigests = spent
  record.secretDigest = ARGV[2]
  record.rotationNonce = ARGV[3]
  record.rotatedAt = now
  record.generation = record.generation + 1
  local encoded = cjson.encode(record)
  redis.call('SET', KEYS[1], encoded, 'PX', ARGV[5])
  return {'rotated', encoded}
end
if presented == spent[1] and now_ms() - record.rotatedAt <= tonumber(ARGV[4]) then
  return {'retry', raw}
end
for _, digest in ipairs(spent) do
  if presented == digest then
    redis.call('DEL', KEYS[1])
    return {'reused', raw}
  end
end
return {'unknown', ''}
