--[[
  Marks a POST committed: it is no longer open, so clean-up leaves it alone.

  KEYS[1]  HASH  <prefix>:posts:open
  KEYS[2]  SET   <prefix>:post:<post>:chunks
  KEYS[3]  SET   <prefix>:post:<post>:workers
  ARGV[1]  post id

  Returns 1 if the POST was open, 0 if clean-up had already aborted it.
]]
local open = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return open
