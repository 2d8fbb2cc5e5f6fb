--[[ Replace a key's value only while it still holds the caller's token.

KEYS[1]  the key (string)
ARGV[1]  the token the caller expects
ARGV[2]  the new value
ARGV[3]  the new value's TTL in ms (integer >= 1)
Returns  1 when written, 0 when the key is gone or holds another value
Used where a writer must not undo what happened since it took its token (a cache fill
racing an invalidation, a consumer completing a claim that expired and was retaken).
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
