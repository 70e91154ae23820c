--[[
  Marks the `_id`s an upsert POST will rewrite, all or none: each must still be held in the
  id index by the chunk the coordinator found storing its row (an id of the generated form,
  which names its chunk, may be absent: it is then recorded), and not be marked by another
  POST. While marked, no POST takes the id (take-ids-2.lua), so a row deleted before the
  upsert commits is stored again by it rather than by a second request in another chunk.

  KEYS[1]     HASH  <prefix>:table:{<table>}:ids        _id -> chunk id
  KEYS[2]     HASH  <prefix>:table:{<table>}:upserting  _id -> upsert POST id
  ARGV[1]     the upsert POST id
  ARGV[2..n]  pairs: id, the chunk holding its row

  Returns an empty list when all were marked, else id, holder pairs that stopped the marking
  (the index's holder now, or `~<post>` for a mark of another POST).
]]
local stop = {}
for i = 2, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local marked = redis.call('HGET', KEYS[2], ARGV[i])
  if cur and cur ~= ARGV[i + 1] then
    stop[#stop + 1] = ARGV[i]
    stop[#stop + 1] = cur
  elseif marked and marked ~= ARGV[1] then
    stop[#stop + 1] = ARGV[i]
    stop[#stop + 1] = '~' .. marked
  end
end
if #stop > 0 then return stop end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
  if not redis.call('HGET', KEYS[1], ARGV[i]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return stop
