-- Sets or clears the deadline of a live record, leaving its value and version alone.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] deadline. ARGV[1] the ttl in milliseconds,
-- or "" to clear the deadline. With a ttl, the caller has filed the record in the expiry index
-- first (see expiry.rs).
--
-- Returns 1 when done, 0 when there is no live record (nothing changed).
if redis.call('EXISTS', KEYS[1], KEYS[2]) ~= 2 then
  return 0
end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[3])
else
  redis.call('SET', KEYS[3], exact(now_ms() + tonumber(ARGV[1])))
end
return 1
