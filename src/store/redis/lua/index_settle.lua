-- Ends one sweep's claim on expiry index entries (see expiry.rs): each entry still at the
-- claim's score (nobody touched it since) is removed or moved to the deadline its record
-- reported. An entry a write touched meanwhile is left as it is: that write may be about to set
-- a deadline, and the entry must outlive it.
--
-- KEYS[1] the expiry index set. ARGV[1] the claim's score, then (id, new score or "" to
-- remove) pairs. Returns how many entries were settled.
local claim = tonumber(ARGV[1])
local settled = 0
for i = 2, #ARGV, 2 do
  local raw = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if raw and tonumber(raw) == claim then
    if ARGV[i + 1] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
    settled = settled + 1
  end
end
return settled
