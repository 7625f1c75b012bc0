-- Compare-and-set of one record, publishing every new version.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] last-operation key.
-- ARGV[1] the expected version (canonical; live or tombstone, "0" = never written), ARGV[2]
-- "1" if the record must exist at that version, "0" if it must not, ARGV[3] the record's
-- channel, ARGV[4] this operation's id, then one (version, JSON value) pair per new value,
-- versions consecutive from ARGV[1] + 1.
--
-- Returns {1, version, false} when applied (version = the last one, or ARGV[1] if no values),
-- {0, current version, current value or false} on a conflict, {-1, raw version, false} when
-- the stored version is not a number.
local raw = redis.call('GET', KEYS[2])
local current = '0'
local exists = false
if raw then
  current = canonical(raw)
  if not current then
    return {-1, raw, false}
  end
  exists = redis.call('EXISTS', KEYS[1]) == 1
end
if current ~= ARGV[1] or exists ~= (ARGV[2] == '1') then
  local value = false
  if exists then
    value = redis.call('GET', KEYS[1])
  end
  return {0, current, value}
end
local n = #ARGV
if n < 6 then
  return {1, current, false}
end
-- The values are JSON already, so the message is built by concatenation, never re-encoded.
for i = 5, n, 2 do
  redis.call('PUBLISH', ARGV[3], '{"version":' .. ARGV[i] .. ',"value":' .. ARGV[i + 1] .. '}')
end
-- The script runs atomically, so storing only the last value is indistinguishable from
-- storing each in turn.
redis.call('SET', KEYS[1], ARGV[n])
redis.call('SET', KEYS[2], ARGV[n - 1])
redis.call('SET', KEYS[3], ARGV[4], 'PX', OP_TTL_MS)
return {1, ARGV[n - 1], false}
