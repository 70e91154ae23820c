--[[
  Releases a lock taken with SET key token NX PX lease, only if it is still ours (it may
  have expired and been taken by another process meanwhile).

  KEYS[1]  STRING  the lock
  ARGV[1]  our token

  Returns 1 when released, -4 (LOCK_NOT_HELD, common/script-codes.ts) when the lock was no
  longer ours.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return -4
