--[[ Delete a key only while it still holds the caller's token.

KEYS[1]  the key (string)
ARGV[1]  the token the caller wrote
Returns  1 when deleted, 0 when the key is gone or holds another value
A plain GET then DEL would delete a successor's value written in between.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
