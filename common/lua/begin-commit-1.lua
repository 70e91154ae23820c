--[[
  First step of committing a POST: marks its open record `committing`, atomically with
  the check that clean-up has not aborted it. From here on clean-up finishes the commit
  (sends COMMIT again) instead of aborting, should this coordinator die before it
  closes the record.

  KEYS[1]  HASH  <prefix>:posts:open      post id -> JSON {coordinator, table, at[, committing]}
                                           (committing: the Redis time, ms, the decision was taken)
  ARGV[1]  post id

  Returns 1 when the POST may commit, -1 (POST_NOT_OPEN, common/script-codes.ts) when it was
  aborted already.
]]
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return -1
end
local rec = cjson.decode(raw)
local t = redis.call('TIME')
rec.committing = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
