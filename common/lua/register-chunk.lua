--[[
  Records where a chunk was placed, in one atomic step, so that repair and reads can
  always tell which workers hold it. Called with a variable number of keys.

  KEYS[1]     HASH  <prefix>:chunks                   chunk id -> JSON {table, post, replicas, rows}
  KEYS[2]     SET   <prefix>:table:<table>:chunks     chunk ids of the table
  KEYS[3]     ZSET  <prefix>:posts:open               POSTs not yet committed (score: ms)
  KEYS[4..n]  SET   <prefix>:worker:<id>:chunks       one per replica
  ARGV[1]     chunk id
  ARGV[2]     JSON metadata
  ARGV[3]     post id
  ARGV[4]     now (ms)

  Returns the number of replica sets the chunk was added to.
]]
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
for i = 4, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
end
return #KEYS - 3
