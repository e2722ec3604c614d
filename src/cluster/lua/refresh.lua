-- New expire_at for a session. KEYS: 1 user hash. ARGV: 1 field, 2 sid, 3 expire_at. Returns 1 or 0.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local e = parse(v)
if not e or e.sid ~= ARGV[2] then return 0 end
e.exp = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], value(e))
return 1
