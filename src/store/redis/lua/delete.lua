-- Deletes one record, keeping its version key as the tombstone and dropping its history and its
-- deadline, and publishes the deletion. It runs even while Redis is over `maxmemory` (see transport.rs): it
-- frees more than the one small key it adds.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] last-operation key, KEYS[4] history list,
-- KEYS[5] history size, KEYS[6] deadline. ARGV[1] the record's channel, ARGV[2] this operation's id, ARGV[3] the
-- version the live record must have, or "" for any, ARGV[4] the change feed's channel ("" =
-- feed off), ARGV[5] the record id (the feed's message).
--
-- Returns {1, last version, false} when deleted, {0, tombstone version or "0", false} when
-- there was no record, {2, current version, current value or false} when ARGV[3] did not
-- match, {-1, raw version, false} when the stored version is not a number (nothing changed).
local raw = redis.call('GET', KEYS[2])
if not raw then
  if ARGV[3] ~= '' then
    return {2, '0', false}
  end
  -- Without a version there is no record; a stray value must not outlive the delete.
  redis.call('DEL', KEYS[1], KEYS[6])
  return {0, '0', false}
end
local version = canonical(raw)
if not version then
  return {-1, raw, false}
end
if ARGV[3] ~= '' then
  local value = redis.call('GET', KEYS[1])
  if not value and version == ARGV[3] and redis.call('GET', KEYS[3]) == ARGV[2] then
    return {1, version, false}
  end
  if not value or version ~= ARGV[3] then
    return {2, version, value or false}
  end
end
if redis.call('DEL', KEYS[1]) == 0 then
  -- A resent copy of this very delete (see write.lua) reports what the first copy did.
  if redis.call('GET', KEYS[3]) == ARGV[2] then
    return {1, version, false}
  end
  return {0, version, false}
end
-- The deadline goes with the record: one created again later must not inherit it. Its expiry
-- index entry stays; the next sweep finds no deadline and removes it.
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[3], ARGV[2], 'PX', OP_TTL_MS)
announce_deletion(ARGV[1], version, ARGV[4], ARGV[5])
return {1, version, false}
