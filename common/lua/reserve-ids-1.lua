--[[
  Reserves the `_id`s of a chunk in its table's id index: each id not in the index is
  recorded as held by this chunk. Ids already held by another chunk are returned, for the
  coordinator to resolve (coordinator/id-index.ts): that chunk's POST may still be open, may
  have been aborted (its placement is gone), or its row may since have been deleted.

  KEYS[1]     HASH  <prefix>:table:{<table>}:ids     _id -> chunk id
  ARGV[1]     chunk id
  ARGV[2..n]  the chunk's _ids

  Returns a flat list: id, holding chunk, id, holding chunk, ... (empty when all were free).
]]
local taken = {}
-- One HMGET and one HSET per slice rather than an HSETNX per id (a redis.call costs more
-- than the work it does); slices keep unpack() within Lua's stack limit.
local SLICE = 1000
for from = 2, #ARGV, SLICE do
  local to = math.min(from + SLICE - 1, #ARGV)
  local ids = {}
  for i = from, to do ids[#ids + 1] = ARGV[i] end
  local holders = redis.call('HMGET', KEYS[1], unpack(ids))
  local free = {}
  for i, id in ipairs(ids) do
    local holder = holders[i]
    if not holder then
      free[#free + 1] = id
      free[#free + 1] = ARGV[1]
    elseif holder ~= ARGV[1] then
      taken[#taken + 1] = id
      taken[#taken + 1] = holder
    end
  end
  if #free > 0 then redis.call('HSET', KEYS[1], unpack(free)) end
end
return taken
