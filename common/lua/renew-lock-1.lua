--[[
  Extends the lease of a lock taken with SET key token NX PX lease, only if it is still ours.

  KEYS[1]  STRING  the lock
  ARGV[1]  our token
  ARGV[2]  the new lease, ms

  Returns 1 when extended, -4 (LOCK_NOT_HELD, common/script-codes.ts) when the lock was no
  longer ours.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return -4
