-- Compare-and-set of one or more records in one call (a batch of writes to different records,
-- see batch.rs), each keeping its history and publishing every new version.
--
-- KEYS: 7 per record, in order: value key, version key, last-operation key, history list,
-- history size in bytes, deadline, and the expiry index (one Redis node, with a ttl) or the
-- deadline key again (no index to file here).
-- ARGV[1] the change feed's channel ("" = feed off), ARGV[2] the writing store's tag, which
-- leads each update it publishes (`"from":"<tag>"` right after the version: the store's own
-- router drops its own updates unread, see changes.rs), then one segment per record:
--   1 the expected version (canonical; live or tombstone, "0" = never written), 2 "1" if the
--   record must exist at that version, "0" if it must not, 3 the record's channel, 4 this
--   operation's id, 5 most history entries kept (0 = none), 6 most history bytes kept, 7 the
--   record id (the feed's message), 8 the ttl in milliseconds or "" (keep the deadline), 9 "1"
--   to file the deadline in the expiry index (its key in KEYS), 10 how many values follow;
--   then one (version, JSON value, JSON patch or "") triple per new value, versions
--   consecutive from the expected one + 1. An empty patch (a creation) restarts the history: it
--   must never lead from a deleted record's value to a new one.
--
-- With a ttl, an applied write of at least one value sets the deadline to Redis's now + ttl;
-- on a cluster the caller has filed the record in the expiry index first (see expiry.rs).
-- Without one, the deadline key is not touched: a plain write costs no more than before
-- deadlines existed.
--
-- A copy of an operation that was applied already (same operation id, its last version and
-- value current) reports it as applied instead of as a conflict with itself.
--
-- Returns three entries per record, in order: {1, version, false} when applied (version = the
-- last one, or the expected one if no values), {0, current version, current value or false} on
-- a conflict, {-1, raw version, false} when the stored version is not a number, {-2, error,
-- false} when Redis refused one of the record's commands (its keys were of another type): that
-- record may be half written, and the other records of the batch are unaffected.

-- Arguments before a segment's values.
local HEAD = 10

-- What follows the version in each update this call publishes.
local FROM = ',"from":"' .. ARGV[2] .. '",'

-- One record's write: KEYS from k + 1, its segment from ARGV[a], n values.
local function write_record(k, a, n)
  local raw = redis.call('GET', KEYS[k + 2])
  local current = '0'
  local exists = false
  if raw then
    current = canonical(raw)
    if not current then
      return -1, raw, false
    end
    exists = redis.call('EXISTS', KEYS[k + 1]) == 1
  end
  local last = a + HEAD + 3 * n - 1
  if current ~= ARGV[a] or exists ~= (ARGV[a + 1] == '1') then
    -- This very operation was applied already (a client resent it after losing the answer, as
    -- a cluster client does on a dropped connection): report what the first copy did.
    local value = false
    if exists then
      value = redis.call('GET', KEYS[k + 1])
      if n > 0 and current == ARGV[last - 2] and value == ARGV[last - 1]
          and redis.call('GET', KEYS[k + 3]) == ARGV[a + 3] then
        return 1, current, false
      end
    end
    return 0, current, value
  end
  if n == 0 then
    return 1, current, false
  end
  local keep, keep_bytes = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local history, size = KEYS[k + 4], KEYS[k + 5]
  -- The values are JSON already, so messages are built by concatenation, never re-encoded.
  -- They are published once everything is stored (see common.lua).
  local messages = {}
  for i = a + HEAD, last, 3 do
    local version, value, patch = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if patch == '' or keep == 0 then
      redis.call('DEL', history, size)
    end
    if patch == '' then
      messages[#messages + 1] = '{"version":' .. version .. FROM .. '"value":' .. value .. '}'
    else
      messages[#messages + 1] =
        '{"version":' .. version .. FROM .. '"patch":' .. patch .. ',"value":' .. value .. '}'
      if keep > 0 then
        -- RPUSH answers the new length; a full list gives up its oldest entry in the same
        -- step, so the size moves once.
        local entry = '{"version":' .. version .. ',"patch":' .. patch .. '}'
        local count = redis.call('RPUSH', history, entry)
        local delta = #entry
        while count > keep do
          local oldest = redis.call('LPOP', history)
          if not oldest then
            break
          end
          delta = delta - #oldest
          count = count - 1
        end
        local bytes = redis.call('INCRBY', size, delta)
        while bytes > keep_bytes do
          local oldest = redis.call('LPOP', history)
          if not oldest then
            break
          end
          bytes = redis.call('DECRBY', size, #oldest)
          count = count - 1
        end
      end
    end
  end
  -- The script runs atomically, so storing only the last value is indistinguishable from
  -- storing each in turn.
  redis.call('MSET', KEYS[k + 1], ARGV[last - 1], KEYS[k + 2], ARGV[last - 2])
  redis.call('SET', KEYS[k + 3], ARGV[a + 3], 'PX', OP_TTL_MS)
  if ARGV[a + 7] ~= '' then
    local index = false
    if ARGV[a + 8] == '1' then
      index = KEYS[k + 7]
    end
    set_deadline(KEYS[k + 6], ARGV[a + 7], index, ARGV[a + 6])
  end
  for _, message in ipairs(messages) do
    redis.call(PUBLISH, ARGV[a + 2], message)
  end
  -- Once per record however many versions: the feed names records, it does not count
  -- changes. Classic PUBLISH even on a cluster (see keys.rs).
  if ARGV[1] ~= '' then
    redis.call('PUBLISH', ARGV[1], ARGV[a + 6])
  end
  return 1, ARGV[last - 2], false
end

-- Why a record's commands failed, as text (Redis raises a table with an `err` field).
local function reason(err)
  if type(err) == 'table' and err.err then
    return err.err
  end
  return tostring(err)
end

local results = {}
local k, a = 0, 3
while a <= #ARGV do
  local n = tonumber(ARGV[a + 9])
  local ok, status, version, value = pcall(write_record, k, a, n)
  if not ok then
    status, version, value = -2, reason(status), false
  end
  results[#results + 1] = status
  results[#results + 1] = version
  results[#results + 1] = value
  k = k + 7
  a = a + HEAD + 3 * n
end
return results
