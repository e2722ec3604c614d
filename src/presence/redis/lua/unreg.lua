-- Compare-and-delete one session. KEYS: 1 user hash. ARGV: 1 field, 2 sid. Returns 1 removed, 0 not.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local e = parse(v)
if not e or e.sid ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
drop_if_empty(KEYS[1])
return 1
