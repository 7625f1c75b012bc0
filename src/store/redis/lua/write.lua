-- Compare-and-set of one record, keeping its history and publishing every new version.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] last-operation key, KEYS[4] history list,
-- KEYS[5] history size in bytes, KEYS[6] deadline, KEYS[7] (one Redis node only, with a ttl)
-- the expiry index.
-- ARGV[1] the expected version (canonical; live or tombstone, "0" = never written), ARGV[2]
-- "1" if the record must exist at that version, "0" if it must not, ARGV[3] the record's
-- channel, ARGV[4] this operation's id, ARGV[5] most history entries kept (0 = none), ARGV[6]
-- most history bytes kept, ARGV[7] the change feed's channel ("" = feed off), ARGV[8] the
-- record id (the feed's message), ARGV[9] the ttl in milliseconds or "" (keep the deadline),
-- then one (version, JSON value, JSON patch or "") triple per new value, versions consecutive
-- from ARGV[1] + 1. An empty patch (a creation) restarts the history: it must never lead from a
-- deleted record's value to a new one.
--
-- With a ttl, an applied write of at least one value sets the deadline to Redis's now + ttl;
-- the caller has filed the record in the expiry index first (see expiry.rs). Without one, the
-- deadline key is not touched: a plain write costs no more than before deadlines existed.
--
-- A copy of an operation that was applied already (same ARGV[4], its last version and value
-- current) reports it as applied instead of as a conflict with itself.
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
local n = #ARGV
if current ~= ARGV[1] or exists ~= (ARGV[2] == '1') then
  -- This very operation was applied already (a client resent it after losing the answer, as a
  -- cluster client does on a dropped connection): report what the first copy did.
  local value = false
  if exists then
    value = redis.call('GET', KEYS[1])
    if n >= 12 and current == ARGV[n - 2] and value == ARGV[n - 1]
        and redis.call('GET', KEYS[3]) == ARGV[4] then
      return {1, current, false}
    end
  end
  return {0, current, value}
end
if n < 12 then
  return {1, current, false}
end
local keep, keep_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
-- The values are JSON already, so messages are built by concatenation, never re-encoded. They
-- are published once everything is stored (see common.lua).
local messages = {}
for i = 10, n, 3 do
  local version, value, patch = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if patch == '' or keep == 0 then
    redis.call('DEL', KEYS[4], KEYS[5])
  end
  if patch == '' then
    messages[#messages + 1] = '{"version":' .. version .. ',"value":' .. value .. '}'
  else
    messages[#messages + 1] =
      '{"version":' .. version .. ',"patch":' .. patch .. ',"value":' .. value .. '}'
    if keep > 0 then
      local entry = '{"version":' .. version .. ',"patch":' .. patch .. '}'
      redis.call('RPUSH', KEYS[4], entry)
      local bytes = redis.call('INCRBY', KEYS[5], #entry)
      local count = redis.call('LLEN', KEYS[4])
      while count > keep or bytes > keep_bytes do
        local oldest = redis.call('LPOP', KEYS[4])
        if not oldest then
          break
        end
        bytes = redis.call('DECRBY', KEYS[5], #oldest)
        count = count - 1
      end
    end
  end
end
-- The script runs atomically, so storing only the last value is indistinguishable from
-- storing each in turn.
redis.call('SET', KEYS[1], ARGV[n - 1])
redis.call('SET', KEYS[2], ARGV[n - 2])
redis.call('SET', KEYS[3], ARGV[4], 'PX', OP_TTL_MS)
if ARGV[9] ~= '' then
  set_deadline(KEYS[6], ARGV[9], KEYS[7], ARGV[8])
end
for _, message in ipairs(messages) do
  redis.call(PUBLISH, ARGV[3], message)
end
-- Once per call however many versions: the feed names records, it does not count changes.
-- Classic PUBLISH even on a cluster (see keys.rs).
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], ARGV[8])
end
return {1, ARGV[n - 2], false}
