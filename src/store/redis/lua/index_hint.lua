-- Files a record in the expiry index before its own script sets a deadline (see expiry.rs for
-- the whole protocol), so that a deadline never exists without an entry at or before it. Used
-- on a Redis Cluster, where the index is not in the record's slot; on one node the record's
-- scripts file it themselves, atomically (`file_hint` in common.lua).
--
-- KEYS[1] the expiry index set. ARGV[1] the ttl in milliseconds, ARGV[2] the record id.
-- Returns 1 when the entry was added or moved.
return file_hint(KEYS[1], now_ms() + tonumber(ARGV[1]), ARGV[2])
