--[[
  Records that a process is alive, with the Redis server's clock.

  KEYS[1]  ZSET  e.g. <prefix>:coordinators   id -> last heartbeat (ms)
  ARGV[1]  id

  Returns the server time in ms.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
