--[[
  Removes the marks of one upsert POST (mark-upserts-2.lua) once it committed or aborted,
  or when another request found the POST gone: only marks that still name that POST.

  KEYS[1]     HASH  <prefix>:table:{<table>}:upserting  _id -> upsert POST id
  ARGV[1]     the POST id
  ARGV[2..n]  ids

  Returns how many marks were removed.
]]
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
