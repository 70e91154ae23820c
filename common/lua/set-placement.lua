--[[
  Changes one chunk's placement record (repair, move, scrub) if it is still the one the
  caller read: compare-and-set, so two jobs that act on one chunk (a stalled BullMQ job run
  twice, a repair racing a move) never overwrite each other's copies. A worker named for the
  first time must still take copies: not draining, not retired (a move planned before a
  drain must not land on the drained worker).

  KEYS[1]     HASH  <prefix>:chunks                   chunk id -> JSON {table, post, replicas, rows}
  KEYS[2]     STRING <prefix>:table:<t>:placement     the table's placement version
  KEYS[3]     HASH  <prefix>:workers:draining
  KEYS[4]     HASH  <prefix>:workers:retired
  KEYS[5]     ZSET  <prefix>:chunks:under-replicated
  KEYS[6..]   SET   <prefix>:worker:<id>:chunks       first the added workers, then the removed
  ARGV[1]     chunk id
  ARGV[2]     the record as read
  ARGV[3]     the new record
  ARGV[4]     number of added workers (their ids follow, then the removed ones)
  ARGV[5]     under-replicated set: '' clears the chunk, '-' leaves it, a number (ms) is when
              repair looks again
  ARGV[6..]   worker ids, in the order of KEYS[6..]

  Returns 1, or (common/script-codes.ts) -3 RECORD_CHANGED when the record is not the one
  read, -5 TARGET_UNAVAILABLE when an added worker is draining or retired: nothing changed.
]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return -3
end
local added = tonumber(ARGV[4])
for i = 1, added do
  local w = ARGV[5 + i]
  if redis.call('HEXISTS', KEYS[3], w) == 1 or redis.call('HEXISTS', KEYS[4], w) == 1 then
    return -5
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
for i = 6, #KEYS do
  if i - 5 <= added then
    redis.call('SADD', KEYS[i], ARGV[1])
  else
    redis.call('SREM', KEYS[i], ARGV[1])
  end
end
redis.call('INCR', KEYS[2])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[5], ARGV[1])
elseif ARGV[5] ~= '-' then
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
end
return 1
