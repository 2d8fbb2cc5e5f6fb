--[[ Prelude: the server's clock, put in place of a script's include line for it.

Defines  now_ms(): Redis TIME in whole ms since the epoch
Redis TIME is the clock every client and gateway shares; their own clocks drift.
]]
local function now_ms()
  local t = redis.call('TIME')
  return math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
end
