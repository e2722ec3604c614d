-- New expire_at for a session. KEYS: 1 user hash, 2 revocation im:{A:U}:nb. ARGV: 1 field, 2 sid,
-- 3 expire_at, 4 deadline (ms, Redis clock; 0 none), 5 TLS.time of the new UserSig.
-- Returns 1 updated, 0 not this session, -1 run after the deadline, -2 UserSig revoked (70052);
-- nothing changes unless 1.
local deadline = tonumber(ARGV[4] or '0')
if deadline > 0 then
  local _, now_us = now()
  if math.floor(now_us / 1000) > deadline then return -1 end
end
local nb = redis.call('GET', KEYS[2])
if nb and tonumber(ARGV[5]) <= tonumber(nb) then return -2 end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local e = parse(v)
if not e or e.sid ~= ARGV[2] then return 0 end
e.exp = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], value(e))
return 1
