-- Compare-and-set of one record, publishing every new version.
--
-- KEYS[1] value key, KEYS[2] version key.
-- ARGV[1] the expected version (canonical, "0" = absent), ARGV[2] the record's channel, then
-- one (version, JSON value) pair per new value, versions consecutive from ARGV[1] + 1.
--
-- Returns {1, version, false} when applied (version = the last one, or ARGV[1] if no values),
-- {0, current version, current value} on a conflict, {-1, raw version, false} when the stored
-- version is not a number.
local raw = redis.call('GET', KEYS[2])
local current = '0'
if raw then
  current = canonical(raw)
  if not current then
    return {-1, raw, false}
  end
end
if current ~= ARGV[1] then
  return {0, current, redis.call('GET', KEYS[1])}
end
local n = #ARGV
if n < 4 then
  return {1, current, false}
end
-- The values are JSON already, so the message is built by concatenation, never re-encoded.
for i = 3, n, 2 do
  redis.call('PUBLISH', ARGV[2], '{"version":' .. ARGV[i] .. ',"value":' .. ARGV[i + 1] .. '}')
end
-- The script runs atomically, so storing only the last value is indistinguishable from
-- storing each in turn.
redis.call('SET', KEYS[1], ARGV[n])
redis.call('SET', KEYS[2], ARGV[n - 1])
return {1, ARGV[n - 1], false}
