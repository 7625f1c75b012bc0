-- Deletes one record and publishes the deletion.
--
-- KEYS[1] value key, KEYS[2] version key. ARGV[1] the record's channel.
--
-- Returns {1, last version} when deleted, {0, false} when there was no record, {-1, raw
-- version} when the stored version is not a number (then nothing is changed).
local raw = redis.call('GET', KEYS[2])
if not raw then
  -- Without a version there is no record; a stray value must not outlive the delete.
  redis.call('DEL', KEYS[1])
  return {0, false}
end
local version = canonical(raw)
if not version then
  return {-1, raw}
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], '{"version":' .. version .. ',"deleted":true}')
return {1, version}
