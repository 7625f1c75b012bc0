-- Restores records where the store has nothing as new; publishes nothing.
--
-- KEYS: the value key then the version key of each record. ARGV: the version (canonical) then
-- the JSON value of each record, in the same order.
--
-- A record is written when its version key is absent, unreadable or lower. Returns how many
-- were written.
local written = 0
for i = 1, #KEYS, 2 do
  local incoming = ARGV[i]
  local raw = redis.call('GET', KEYS[i + 1])
  local current = raw and canonical(raw)
  if not current or less(current, incoming) then
    redis.call('SET', KEYS[i], ARGV[i + 1])
    redis.call('SET', KEYS[i + 1], incoming)
    written = written + 1
  end
end
return written
