--[[
  Forgets an aborted POST: its chunks' placement and its open-post record. The reverse of
  register-chunk, for every chunk of the POST at once.

  KEYS[1]     HASH  <prefix>:chunks
  KEYS[2]     SET   <prefix>:table:<table>:chunks
  KEYS[3]     HASH  <prefix>:posts:open
  KEYS[4]     SET   <prefix>:post:<post>:chunks
  KEYS[5]     SET   <prefix>:post:<post>:workers
  KEYS[6]     ZSET  <prefix>:chunks:under-replicated
  KEYS[7..n]  SET   <prefix>:worker:<id>:chunks       every worker that got a chunk
  ARGV[1]     post id

  Returns the number of chunks forgotten, or (common/script-codes.ts) -1 POST_NOT_OPEN when
  the POST is not open, -2 POST_COMMITTING when it is being committed (see
  begin-commit-1.lua): then nothing is touched, so a commit and an abort never both win.
]]
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then
  return -1
end
if cjson.decode(raw).committing then
  return -2
end
local chunks = redis.call('SMEMBERS', KEYS[4])
local n = 0
for _, c in ipairs(chunks) do
  n = n + redis.call('HDEL', KEYS[1], c)
  redis.call('SREM', KEYS[2], c)
  redis.call('ZREM', KEYS[6], c)
  for i = 7, #KEYS do
    redis.call('SREM', KEYS[i], c)
  end
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
return n
