--[[ Set a new TTL on a key only while it still holds the caller's token (lock extension).

KEYS[1]  the key (string)
ARGV[1]  the token the caller wrote
ARGV[2]  the new TTL in ms (integer >= 1)
Returns  1 when extended, 0 when the key is gone or holds another value
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
