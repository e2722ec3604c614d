-- Admin kick. KEYS: 1 user hash, 2 tombstones, 3 revocation. ARGV: 1 platform ('' any), 2 iid ('' any),
-- 3 whole ('1' revokes every UserSig with TLS.time <= now), 4 tombstone ttl, 5 revocation ttl,
-- 6 deadline (ms, Redis clock; 0 none).
-- Returns victims 'sid|node|platform|admin|iid', or {'late'} when run after the deadline (no change).
local now_s, now_us = now()
local deadline = tonumber(ARGV[6] or '0')
if deadline > 0 and math.floor(now_us / 1000) > deadline then return { 'late' } end
if ARGV[3] == '1' then
  local nb = tonumber(redis.call('GET', KEYS[3]) or '0')
  redis.call('SET', KEYS[3], fmt(math.max(nb, now_s)), 'EX', tonumber(ARGV[5]))
end
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, 2) == 'e:' then
    local e = parse(flat[i + 1])
    if e and (ARGV[1] == '' or ARGV[1] == e.plat) and (ARGV[2] == '' or ARGV[2] == e.iid) then
      redis.call('HDEL', KEYS[1], flat[i])
      redis.call('HSET', KEYS[2], e.sid, 'admin|')
      table.insert(out, e.sid .. '|' .. e.node .. '|' .. e.plat .. '|admin|' .. e.iid)
    end
  end
end
if #out > 0 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  drop_if_empty(KEYS[1])
end
return out
