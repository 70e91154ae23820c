--[[
  Forgets chunks of an aborted POST: the reverse of register-chunk, for many chunks.

  KEYS[1]     HASH  <prefix>:chunks
  KEYS[2]     SET   <prefix>:table:<table>:chunks
  KEYS[3]     ZSET  <prefix>:posts:open
  KEYS[4..n]  SET   <prefix>:worker:<id>:chunks       every worker that got a chunk
  ARGV[1]     post id
  ARGV[2..m]  chunk ids

  Returns the number of chunks forgotten.
]]
local n = 0
for j = 2, #ARGV do
  n = n + redis.call('HDEL', KEYS[1], ARGV[j])
  redis.call('SREM', KEYS[2], ARGV[j])
  for i = 4, #KEYS do
    redis.call('SREM', KEYS[i], ARGV[j])
  end
end
redis.call('ZREM', KEYS[3], ARGV[1])
return n
