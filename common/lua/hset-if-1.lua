--[[
  Compare-and-set of one hash field: the catalogue changes a table's entry (its index set)
  only if no other coordinator changed it since it was read. WATCH/MULTI would do on one
  Redis, but not through a cluster client's connection pool.

  KEYS[1]  HASH    the catalogue (`<prefix>:tables`)
  ARGV[1]  the field (table name)
  ARGV[2]  the value read before the change
  ARGV[3]  the new value

  Returns 1 when set, 0 when the field no longer held ARGV[2] (read again and retry).
]]
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
