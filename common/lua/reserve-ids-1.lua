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
for i = 2, #ARGV do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1]) == 0 then
    local holder = redis.call('HGET', KEYS[1], ARGV[i])
    if holder ~= ARGV[1] then
      taken[#taken + 1] = ARGV[i]
      taken[#taken + 1] = holder
    end
  end
end
return taken
