-- Account switch on one socket: the socket's session of another user logs out and the new login is
-- admitted, both or neither.
-- KEYS: 1..5 as admit.lua (the new user's keys), 6 the old user's hash, 7 the old user's tombstones.
-- ARGV: 1..14 as admit.lua (mode 'login'), 15 the old session's field, 16 its sid,
--       17.. 'platform=cap' for each platform of the new login's group.
-- Returns {70169} after the deadline; {1, tombstone} when the old session was evicted meanwhile (the
-- eviction stands, nothing changes, nobody is kicked); otherwise admit's reply, and on {0, ...} the
-- old session is gone too.
local _, now_us = now()
local deadline = tonumber(ARGV[14])
if deadline > 0 and math.floor(now_us / 1000) > deadline then return { 70169 } end
local v = redis.call('HGET', KEYS[6], ARGV[15])
local e = v and parse(v)
local present = e and e.sid == ARGV[16]
if not present then
  local t = redis.call('HGET', KEYS[7], ARGV[16])
  if t then return { 1, t } end
end
local out = admit(KEYS, ARGV, 17)
if out[1] == 0 and present then
  redis.call('HDEL', KEYS[6], ARGV[15])
  drop_if_empty(KEYS[6])
end
return out
