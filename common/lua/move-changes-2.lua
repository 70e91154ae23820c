--[[
  Moves the staged change events of one write into its table's change stream, oldest first,
  at most ARGV[1] of them. Each event leaves the list and enters the stream in the same step,
  so a sender that dies half way leaves the rest staged for whoever finishes the write (the
  next holder of the table's write-order lock), and no event is added twice.

  Each event gets its ordinal `n` (1 for the stream's first event ever, from the stream's
  entries-added): trimming removes events from the head only, so a watcher resuming after
  event n has lost events exactly when the stream's first event is past n + 1.

  KEYS[1]  LIST    <prefix>:table:{<t>}:staged:<write>: events "<op>\31<_id>\31<row>", row
                   empty for a delete (JSON text holds no raw \31, an _id no control character)
  KEYS[2]  STREAM  <prefix>:table:{<t>}:changes: fields op, id, row, n
  ARGV[1]  events to move at most
  ARGV[2]  MAXLEN to trim the stream to after ('0': none)
  ARGV[3]  MINID to trim the stream to after ('': none)

  Returns the number of events still staged.
]]
local items = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if items then
  local n = 0
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then n = info[i + 1] end
    end
  end
  local sep = string.char(31)
  for _, e in ipairs(items) do
    local a = string.find(e, sep, 1, true)
    local b = string.find(e, sep, a + 1, true)
    n = n + 1
    redis.call('XADD', KEYS[2], '*', 'op', string.sub(e, 1, a - 1), 'id', string.sub(e, a + 1, b - 1),
      'row', string.sub(e, b + 1), 'n', n)
  end
  if ARGV[2] ~= '0' then
    redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[2])
  end
  if ARGV[3] ~= '' then
    redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[3])
  end
end
return redis.call('LLEN', KEYS[1])
