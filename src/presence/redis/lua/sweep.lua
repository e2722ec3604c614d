-- Removes a dead node's entries of one user, only while its lease is still lapsed.
-- KEYS: 1 user hash, 2 im:nodes. ARGV: 1 dead node. Returns 'platform|ip' per removed session.
local _, now_us = now()
local l = redis.call('ZSCORE', KEYS[2], ARGV[1])
if l and tonumber(l) > math.floor(now_us / 1000) then return {} end
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, 2) == 'e:' then
    local e = parse(flat[i + 1])
    if e and e.node == ARGV[1] then
      redis.call('HDEL', KEYS[1], flat[i])
      table.insert(out, e.plat .. '|' .. e.ip)
    end
  end
end
drop_if_empty(KEYS[1])
return out
