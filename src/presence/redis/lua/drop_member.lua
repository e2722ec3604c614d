-- Removes a user from a node's user set, only if no entry of the user names that node (atomic, so a
-- login that just added the user is never dropped). KEYS: 1 user hash, 2 node's user set.
-- ARGV: 1 node, 2 member 'A:U'. Returns 1 removed, 0 kept.
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, 2) == 'e:' then
    local e = parse(flat[i + 1])
    if e and e.node == ARGV[1] then return 0 end
  end
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
