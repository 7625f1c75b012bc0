-- Claims the due entries of one expiry index set for one sweep (see expiry.rs): moves up to
-- ARGV[1] entries whose score has passed to the claim's score, now + ARGV[2] (the lease, in
-- milliseconds) + .5, where no other sweep sees them as due until the lease runs out.
--
-- KEYS[1] the expiry index set. ARGV[1] most entries claimed, ARGV[2] the lease.
--
-- Returns {claim score, 1 if more entries were due than claimed else 0, {claimed ids}}.
local now = now_ms()
local max = tonumber(ARGV[1])
local due = redis.call('ZRANGE', KEYS[1], '-inf', exact(now), 'BYSCORE', 'LIMIT', 0, max + 1)
local claim = exact(now + tonumber(ARGV[2]) + 0.5)
local ids = {}
local more = 0
if #due > max then
  more = 1
end
-- ZADD in bounded chunks: Lua's unpack is limited by its stack.
local moves = {}
for i = 1, math.min(#due, max) do
  ids[#ids + 1] = due[i]
  moves[#moves + 1] = claim
  moves[#moves + 1] = due[i]
  if #moves == 1000 then
    redis.call('ZADD', KEYS[1], 'XX', unpack(moves))
    moves = {}
  end
end
if #moves > 0 then
  redis.call('ZADD', KEYS[1], 'XX', unpack(moves))
end
return {claim, more, ids}
