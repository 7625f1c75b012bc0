-- Restores records where the store has nothing as new, and publishes what it wrote so every
-- instance's watchers follow.
--
-- KEYS: the value key, version key, history list, history size and deadline of each record.
-- ARGV[1]: the change feed's channel ("" = feed off); then the version (canonical), the JSON
-- value ("" for a tombstone), the channel and the id of each record, in the same order.
--
-- A record is written when its version key (live or tombstone) is absent, unreadable or
-- lower: a tombstone at or above the incoming version means it was deleted since, and stays
-- deleted. Its history goes: it would not lead to the restored value. A restored tombstone
-- drops the deadline too (a deletion, see delete.lua); a restored value keeps it. Returns how
-- many were written.
local written = 0
-- Published once everything is stored (see common.lua): channel, message, channel, message...
local messages = {}
-- The ids for the change feed, each once per call even if given twice.
local feed, named = {}, {}
for i = 1, #KEYS / 5 do
  local value_key, version_key = KEYS[5 * i - 4], KEYS[5 * i - 3]
  local incoming, json = ARGV[4 * i - 2], ARGV[4 * i - 1]
  local channel, id = ARGV[4 * i], ARGV[4 * i + 1]
  local raw = redis.call('GET', version_key)
  local current = raw and canonical(raw)
  if not current or less(current, incoming) then
    if not named[id] then
      named[id] = true
      feed[#feed + 1] = id
    end
    messages[#messages + 1] = channel
    if json == '' then
      redis.call('DEL', value_key, KEYS[5 * i])
      messages[#messages + 1] = '{"version":' .. incoming .. ',"deleted":true}'
    else
      redis.call('SET', value_key, json)
      messages[#messages + 1] = '{"version":' .. incoming .. ',"value":' .. json .. '}'
    end
    redis.call('SET', version_key, incoming)
    redis.call('DEL', KEYS[5 * i - 2], KEYS[5 * i - 1])
    written = written + 1
  end
end
for i = 1, #messages, 2 do
  redis.call(PUBLISH, messages[i], messages[i + 1])
end
if ARGV[1] ~= '' then
  for _, id in ipairs(feed) do
    redis.call('PUBLISH', ARGV[1], id)
  end
end
return written
