-- Sets or clears the deadline of a live record, leaving its value and version alone.
--
-- KEYS[1] value key, KEYS[2] version key, KEYS[3] deadline, KEYS[4] (one Redis node only, with a
-- ttl) the expiry index. ARGV[1] the ttl in milliseconds, or "" to clear the deadline, ARGV[2]
-- the record id. With a ttl on a cluster, the caller has filed the record in the expiry index
-- first (see expiry.rs); on one node it is filed here.
--
-- Returns 1 when done, 0 when there is no live record (nothing changed).
if redis.call('EXISTS', KEYS[1], KEYS[2]) ~= 2 then
  return 0
end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[3])
else
  set_deadline(KEYS[3], ARGV[1], KEYS[4], ARGV[2])
end
return 1
