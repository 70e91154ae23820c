--[[
  Moves `_id`s to a new holding chunk, each only if its holder is still the one the
  coordinator found stale (compare-and-set: a concurrent POST that reclaimed it first wins)
  and no open upsert POST is about to rewrite its row (mark-upserts-2.lua).

  KEYS[1]     HASH  <prefix>:table:{<table>}:ids        _id -> chunk id
  KEYS[2]     HASH  <prefix>:table:{<table>}:upserting  _id -> upsert POST id
  ARGV[1]     the new holding chunk id
  ARGV[2..n]  pairs: id, the holder expected

  Returns a flat list of id, current holder for the ids not taken (empty when all were);
  an id marked by an upsert POST is returned with `~<post>` as its holder.
]]
local left = {}
for i = 2, #ARGV, 2 do
  local marked = redis.call('HGET', KEYS[2], ARGV[i])
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if marked then
    left[#left + 1] = ARGV[i]
    left[#left + 1] = '~' .. marked
  elseif cur == false or cur == ARGV[i + 1] or cur == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  else
    left[#left + 1] = ARGV[i]
    left[#left + 1] = cur
  end
end
return left
