-- Forgets a dead node once swept, if its lease is still lapsed. KEYS: 1 im:nodes, 2 its user set.
-- ARGV: 1 node. Returns 1 forgotten, 0 alive again.
local _, now_us = now()
local l = redis.call('ZSCORE', KEYS[1], ARGV[1])
if l and tonumber(l) > math.floor(now_us / 1000) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
