-- Where a local session stands. KEYS: 1 user hash, 2 tombstones. ARGV: 1 field, 2 sid.
-- Returns 'present', 'tomb:<reason|by_platform>' or 'missing'.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local e = parse(v)
  if e and e.sid == ARGV[2] then return 'present' end
end
local t = redis.call('HGET', KEYS[2], ARGV[2])
if t then return 'tomb:' .. t end
return 'missing'
