--[[ Revoke an access token's jti until the token would have expired anyway.

KEYS[1]  jwt:revoked:<jti>
ARGV[1]  the token's expiry (its exp claim), in ms since the epoch
ARGV[2]  skew in ms, added so a server with a slow clock still sees the revocation
ARGV[3]  the longest TTL the schema allows, in ms (a forged far-future exp cannot pin a key)
Returns  the TTL set in ms, or 0 when the token had already expired (nothing written)
The TTL is computed from Redis TIME, the clock every gateway shares.
]]
--#include prelude_now
local now = now_ms()
local ttl = tonumber(ARGV[1]) + tonumber(ARGV[2]) - now
if ttl <= 0 then return 0 end
ttl = math.min(ttl, tonumber(ARGV[3]))
redis.call('SET', KEYS[1], '1', 'PX', ttl)
return ttl
