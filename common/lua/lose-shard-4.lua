--[[
  Records the shard a worker id serves. When the id already had another shard (a new
  incarnation: its disk was lost or replaced, or its shard was found rolled back), the
  worker stops counting as a holder of every chunk recorded for it, and those chunks are
  marked for repair. Compare-and-set on the record, so two coordinators that notice the
  change at once apply it once.

  KEYS[1]  HASH  <prefix>:workers:shards            worker id -> JSON {shard, at}
  KEYS[2]  SET   <prefix>:worker:<id>:chunks        chunks recorded for the worker
  KEYS[3]  HASH  <prefix>:chunks                    chunk id -> JSON {table, post, replicas, rows}
  KEYS[4]  ZSET  <prefix>:chunks:under-replicated   chunk id -> when repair should look at it (ms)
  ARGV[1]  worker id
  ARGV[2]  the shard the record must still name ('' when there must be no record)
  ARGV[3]  the new record (JSON)
  ARGV[4]  repair due time for the chunks (ms)

  Returns {-3} (RECORD_CHANGED, common/script-codes.ts) when the record changed meanwhile;
  {0} for a first record; otherwise
  {n, table, ...}: the chunks the worker no longer holds and the tables they belong to.
]]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local curShard = ''
if cur then
  curShard = cjson.decode(cur).shard or ''
end
if curShard ~= ARGV[2] then
  return {-3}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[2] == '' then
  return {0}
end
local chunks = redis.call('SMEMBERS', KEYS[2])
local tables = {}
local seen = {}
for _, c in ipairs(chunks) do
  local raw = redis.call('HGET', KEYS[3], c)
  if raw then
    local m = cjson.decode(raw)
    local kept = {}
    for _, w in ipairs(m.replicas) do
      if w ~= ARGV[1] then
        kept[#kept + 1] = w
      end
    end
    m.replicas = kept
    local json = cjson.encode(m)
    -- cjson writes an empty table as an object; the record's list must stay a list.
    if #kept == 0 then
      json = string.gsub(json, '"replicas":{}', '"replicas":[]')
    end
    redis.call('HSET', KEYS[3], c, json)
    redis.call('ZADD', KEYS[4], ARGV[4], c)
    if not seen[m.table] then
      seen[m.table] = true
      tables[#tables + 1] = m.table
    end
  end
end
redis.call('DEL', KEYS[2])
local out = {#chunks}
for _, t in ipairs(tables) do
  out[#out + 1] = t
end
return out
