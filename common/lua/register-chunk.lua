--[[
  Records where a chunk was placed, in one atomic step, so that repair, reads and the
  clean-up of abandoned POSTs can always tell which workers hold it. Variable key count.

  KEYS[1]     HASH  <prefix>:chunks                   chunk id -> JSON {table, post, replicas, rows}
  KEYS[2]     SET   <prefix>:table:<table>:chunks     chunk ids of the table
  KEYS[3]     HASH  <prefix>:posts:open               post id -> JSON {coordinator, table, at}
  KEYS[4]     SET   <prefix>:post:<post>:chunks       chunk ids of the open POST
  KEYS[5]     SET   <prefix>:post:<post>:workers      workers that got a chunk of it
  KEYS[6..n]  SET   <prefix>:worker:<id>:chunks       one per replica
  ARGV[1]     chunk id
  ARGV[2]     JSON chunk metadata
  ARGV[3]     post id
  ARGV[4]..   replica worker ids (same order as KEYS[6..n])

  The POST's open record must exist (the coordinator creates it before its first chunk): a
  POST that clean-up aborted meanwhile (its coordinator looked dead) gets no more chunks, so
  it cannot come back open with only its later ones.

  Returns the number of replica sets the chunk was added to, or -1 (POST_NOT_OPEN,
  common/script-codes.ts) when the POST is not open.
]]
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
for i = 6, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[i - 2])
end
return #KEYS - 5
