-- Files a record in the expiry index before its own script sets a deadline (see expiry.rs for
-- the whole protocol), so that a deadline never exists without an entry at or before it.
--
-- KEYS[1] the expiry index set. ARGV[1] the ttl in milliseconds, ARGV[2] the record id.
--
-- Scores: whole milliseconds are hints; a half (.5) marks an entry claimed by a sweep until
-- then; a quarter (.25) a claimed entry that a write has touched since. The entry only ever
-- moves earlier, except that a claim is always changed, so the sweep holding it sees that it
-- must not remove it. Returns 1 when the entry was added or moved.
local hint = now_ms() + tonumber(ARGV[1])
local raw = redis.call('ZSCORE', KEYS[1], ARGV[2])
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
redis.call('ZADD', KEYS[1], exact(score), ARGV[2])
return 1
