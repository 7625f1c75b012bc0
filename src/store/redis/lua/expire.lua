-- Deletes one record whose deadline has passed, exactly as delete.lua does (tombstone at its
-- version, history and deadline dropped, last operation kept, deletion published), after
-- checking that deadline itself: the expiry index only hinted that it might be due, and a
-- write may have moved it later since. It runs even while Redis is over `maxmemory`, as
-- delete.lua does: it only frees memory.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] last-operation key, KEYS[4] history list,
-- KEYS[5] history size, KEYS[6] deadline. ARGV[1] the record's channel, ARGV[2] this expiry's
-- operation id, ARGV[3] the change feed's channel ("" = feed off), ARGV[4] the record id.
--
-- Returns {1, version} when it deleted the record (or an earlier copy of this very call did),
-- {2, deadline} when the deadline is still ahead (Redis time, milliseconds), {0, ""} when
-- there is nothing to expire (no deadline, or no live record: a stray deadline is dropped),
-- {-1, raw version} when the stored version is not a number (nothing changed).
local raw_deadline = redis.call('GET', KEYS[6])
if not raw_deadline then
  -- A resent copy (see write.lua) reports what the first one did.
  if redis.call('GET', KEYS[3]) == ARGV[2] then
    return {1, canonical(redis.call('GET', KEYS[2]) or '0') or '0'}
  end
  return {0, ''}
end
local raw = redis.call('GET', KEYS[2])
if not raw or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[6])
  return {0, ''}
end
local version = canonical(raw)
if not version then
  return {-1, raw}
end
local deadline = tonumber(raw_deadline)
if not deadline then
  -- Only these scripts write deadlines; an unreadable one is dropped rather than obeyed.
  redis.call('DEL', KEYS[6])
  return {0, ''}
end
if deadline > now_ms() then
  return {2, exact(deadline)}
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[3], ARGV[2], 'PX', OP_TTL_MS)
announce_deletion(ARGV[1], version, ARGV[3], ARGV[4])
return {1, version}
