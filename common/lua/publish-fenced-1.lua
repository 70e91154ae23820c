--[[
  Publishes a FETCH or DIGEST to one worker with its read fence, in one step: the last id of
  the worker's ops stream now (`0-0` when it is empty), spliced into the message as `tail`.
  One round trip instead of two per read, and the fence is exactly the moment of publishing.
  The stream and the channel share the worker's hash tag, so on a Redis Cluster both live
  on one node and the channel is published sharded (SPUBLISH).

  KEYS[1]  STREAM  <prefix>:worker:{<id>}:ops
  ARGV[1]  the channel, <prefix>:worker:{<id>}:fetch
  ARGV[2]  the message as JSON up to the fence's value (ends with `"tail":"`)
  ARGV[3]  the rest of the message (starts with `"`)
  ARGV[4]  `1` to publish sharded (a Redis Cluster), `0` classic

  Returns the number of subscribers that received it (0: the worker is gone).
]]
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local tail = '0-0'
if last[1] then
  tail = last[1][1]
end
local payload = ARGV[2] .. tail .. ARGV[3]
if ARGV[4] == '1' then
  return redis.call('SPUBLISH', ARGV[1], payload)
end
return redis.call('PUBLISH', ARGV[1], payload)
