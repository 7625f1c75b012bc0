-- Shared by every script below (prepended in Rust, after the script's `#!lua` shebang line and
-- `local PUBLISH = ...`: 'PUBLISH' on one Redis node, 'SPUBLISH' on a Redis Cluster, where a
-- record's channel shares its keys' slot).
--
-- Every write comes before any PUBLISH: a script that stops half-way (an error Redis raises in
-- a command) must never have announced a version it did not store. Redis refuses a flagged
-- script that may not run out of memory before its first command, so memory is not such an
-- error; this order covers the others.
--
-- Versions travel and are stored as decimal strings and are compared as strings, so they stay
-- exact over the whole u64 range: Lua numbers are doubles and would round above 2^53.
--
-- A record's state lives in two keys: the value key (JSON) and the version key. A version key
-- without a value key is a tombstone: the record was deleted at that version, and a record
-- created again continues after it. A value key without a version key is not a record (a
-- stray half, say after an eviction); writes replace it.

-- How long the last operation's id is kept (milliseconds): long enough for an instance whose
-- write timed out to ask whether it was applied.
-- Text, so no write formats the number again.
local OP_TTL_MS = '60000'

-- The version text without leading zeros, or nil when it is not a decimal integer.
local function canonical(raw)
  if not string.match(raw, '^%d+$') then
    return nil
  end
  -- Versions this server writes never have leading zeros: skip the rewrite for them.
  if string.byte(raw, 1) ~= 48 or #raw == 1 then
    return raw
  end
  return (string.gsub(raw, '^0+(%d)', '%1'))
end

-- a < b for canonical version strings.
local function less(a, b)
  return #a < #b or (#a == #b and a < b)
end

-- Redis's clock, in milliseconds since the epoch: deadlines are set and checked by it alone, so
-- the instances' own clocks never matter.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- A number as text, exactly: Lua would print a large one with 14 significant digits, rounding
-- away milliseconds and the fraction that marks a claim (see expiry.rs). Milliseconds, halves
-- and quarters print short: "1712345678901", "1712345678901.5".
local function exact(number)
  return string.format('%.17g', number)
end

-- What every deletion ends with, once its keys are changed (delete.lua, expire.lua): the
-- deletion on the record's channel and, when the feed is on, the id on the change feed
-- (classic PUBLISH even on a cluster, see keys.rs).
local function announce_deletion(channel, version, feed, id)
  redis.call(PUBLISH, channel, '{"version":' .. version .. ',"deleted":true}')
  if feed ~= '' then
    redis.call('PUBLISH', feed, id)
  end
end

-- Files `id` in the expiry index `index` with a deadline hint (see expiry.rs for the whole
-- protocol): whole milliseconds are hints; a half (.5) marks an entry claimed by a sweep until
-- then; a quarter (.25) a claimed entry that a write has touched since. The entry only ever
-- moves earlier, except that a claim is always changed, so the sweep holding it sees that it
-- must not remove it. Returns 1 when the entry was added or moved.
local function file_hint(index, hint, id)
  local raw = redis.call('ZSCORE', index, id)
  local score = hint
  if raw then
    local current = tonumber(raw)
    local fraction = current % 1
    if fraction == 0 or hint < current then
      score = math.min(current, hint)
    elseif fraction == 0.5 then
      score = current - 0.25
    else
      score = current
    end
    if score == current then
      return 0
    end
  end
  redis.call('ZADD', index, exact(score), id)
  return 1
end

-- Sets a record's deadline `ttl` milliseconds (text) from now in its deadline key and, on one
-- node (`index` given), files it in the expiry index with that very deadline (write.lua,
-- set_expiry.lua); on a cluster the caller filed the index before the script.
local function set_deadline(key, ttl, index, id)
  local deadline = now_ms() + tonumber(ttl)
  redis.call('SET', key, exact(deadline))
  if index then
    file_hint(index, deadline, id)
  end
end
