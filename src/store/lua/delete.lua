-- Deletes one record, keeping its version key as the tombstone, and publishes the deletion.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] last-operation key. ARGV[1] the record's
-- channel, ARGV[2] this operation's id.
--
-- Returns {1, last version} when deleted, {0, tombstone version or "0"} when there was no
-- record, {-1, raw version} when the stored version is not a number (then nothing is changed).
local raw = redis.call('GET', KEYS[2])
if not raw then
  -- Without a version there is no record; a stray value must not outlive the delete.
  redis.call('DEL', KEYS[1])
  return {0, '0'}
end
local version = canonical(raw)
if not version then
  return {-1, raw}
end
if redis.call('DEL', KEYS[1]) == 0 then
  return {0, version}
end
redis.call('SET', KEYS[3], ARGV[2], 'PX', OP_TTL_MS)
redis.call('PUBLISH', ARGV[1], '{"version":' .. version .. ',"deleted":true}')
return {1, version}
