--[[
  Records a worker heartbeat with the Redis server's clock, so that liveness does not
  depend on the clocks of the machines workers run on.

  KEYS[1]  ZSET  <prefix>:workers          worker id -> last heartbeat (ms)
  KEYS[2]  HASH  <prefix>:workers:status   worker id -> JSON status
  ARGV[1]  worker id
  ARGV[2]  JSON status

  Returns the server time in ms.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return now
