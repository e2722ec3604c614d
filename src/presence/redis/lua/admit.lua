-- admit(KEYS, ARGV, caps_from): login or restore one session atomically for its user, applying the canonical policy form
-- (policy::canonical in Rust).
-- KEYS: 1 user hash im:{A:U}, 2 tombstones im:{A:U}:k, 3 revocation im:{A:U}:nb, 4 im:nodes,
--       5 this node's user set im:node:<id>:u
-- ARGV: 1 mode (login|restore|recheck: a restore that decides a present entry again), 2 node, 3 sid, 4 platform, 5 iid ('' none), 6 expire_at,
--       7 TLS.time, 8 restore order, 9 tombstone ttl (s), 10 user key 'A:U', 11 client ip,
--       12 replaces sid ('' none), 13 lease_ms, 14 deadline (ms, Redis clock; 0 none),
--       caps_from.. 'platform=cap' for each platform of the group (login.lua: 15)
-- Returns {70169} run after the deadline (the caller gave up: nothing changes); {70052} revoked;
--         {1, tombstone} for a login whose replaced session was evicted (nothing changes);
--         {1, 'reason|by_platform'} a restore that loses (or was tombstoned);
--         {0, order, victim...} with victim = 'sid|node|platform|reason|iid'.
local function admit(KEYS, ARGV, caps_from)
  local mode, node, sid, plat, iid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  local now_s, now_us = now()
  local now_ms = math.floor(now_us / 1000)
  local deadline = tonumber(ARGV[14])
  if deadline > 0 and now_ms > deadline then return { 70169 } end
  if mode == 'login' then
    local nb = redis.call('GET', KEYS[3])
    if nb and tonumber(ARGV[7]) <= tonumber(nb) then return { 70052 } end
    -- This socket's session being updated in place was evicted meanwhile: the eviction stands (the
    -- socket gets its kick), and this login changes nothing.
    if ARGV[12] ~= '' then
      local t = redis.call('HGET', KEYS[2], ARGV[12])
      if t then return { 1, t } end
    end
  else
    local tomb = redis.call('HGET', KEYS[2], sid)
    if tomb then return { 1, tomb } end
  end
  -- The node doing the login is alive: keep its lease at least this long.
  redis.call('ZADD', KEYS[4], 'GT', now_ms + tonumber(ARGV[13]), node)
  local cap = {}
  for i = caps_from, #ARGV do
    local p, c = string.match(ARGV[i], '^([^=]+)=(%d+)$')
    cap[p] = tonumber(c)
  end
  local field = 'e:' .. plat .. ':' .. (iid ~= '' and iid or ('~' .. sid))
  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
  local order
  if mode == 'login' then
    order = math.max(now_us, last + 1)
  else
    order = tonumber(ARGV[8])
    local cur = redis.call('HGET', KEYS[1], field)
    if mode == 'restore' and cur and parse(cur) and parse(cur).sid == sid then
      return { 0, fmt(order) }
    end
  end
  if order > last then redis.call('HSET', KEYS[1], 'last', fmt(order)) end
  local live, dead = load(KEYS[1], KEYS[4], now_ms)
  for _, e in ipairs(dead) do
    if e.lapsed then
      -- Its node's lease lapsed: the sweeper removes it and emits its Disconnect/LinkClose webhook.
      -- Leave it for the sweeper, out of the newcomer's field.
      if e.field == field then
        redis.call('HDEL', KEYS[1], e.field)
        redis.call('HSET', KEYS[1], 'e:' .. e.plat .. ':~' .. e.sid, value(e))
      end
    else
      redis.call('HDEL', KEYS[1], e.field)
    end
  end
  local me = { sid = sid, node = node, order = order, exp = tonumber(ARGV[6]), plat = plat, ip = ARGV[11], iid = iid, field = field, new = true }
  local cands = { me }
  for _, e in ipairs(live) do
    if e.sid == ARGV[12] then
      redis.call('HDEL', KEYS[1], e.field) -- this socket's previous session, updated in place
    elseif e.sid == sid then
      -- The restored session's own entry: in its field (a recheck), or moved aside (to its ~sid
      -- field) while its node's lease was lapsed and live again now that the node is back. The
      -- restore takes its place. Counting it would make the session its own rival (a self-kick, or
      -- two entries for one socket).
      redis.call('HDEL', KEYS[1], e.field)
    elseif cap[e.plat] then
      table.insert(cands, e)
    end
  end
  -- 1. per platform and instance id only the newest stays
  for _, a in ipairs(cands) do
    if a.iid ~= '' then
      for _, b in ipairs(cands) do
        if a ~= b and b.plat == a.plat and b.iid == a.iid and b.order > a.order then a.reason = 'replaced' end
      end
    end
  end
  -- 2. the platform of the newest remaining entry wins the group
  local star = nil
  for _, e in ipairs(cands) do
    if not e.reason and (star == nil or e.order > star.order) then star = e end
  end
  local on_star = {}
  for _, e in ipairs(cands) do
    if not e.reason then
      if e.plat == star.plat then table.insert(on_star, e) else e.reason = 'multi_device' end
    end
  end
  -- 3. the newest max_instances stay on the winning platform
  table.sort(on_star, function(a, b) return a.order > b.order end)
  for i = (cap[star.plat] or 1) + 1, #on_star do on_star[i].reason = 'multi_device' end
  if me.reason then
    return { 1, me.reason .. '|' .. star.plat }
  end
  local out = { 0, fmt(order) }
  local ttl = tonumber(ARGV[9])
  for _, e in ipairs(cands) do
    if e.reason then
      if e.field ~= field then redis.call('HDEL', KEYS[1], e.field) end
      redis.call('HSET', KEYS[2], e.sid, e.reason .. '|' .. plat)
      table.insert(out, e.sid .. '|' .. e.node .. '|' .. e.plat .. '|' .. e.reason .. '|' .. e.iid)
    end
  end
  if #out > 2 then redis.call('EXPIRE', KEYS[2], ttl) end
  redis.call('HSET', KEYS[1], field, value(me))
  redis.call('SADD', KEYS[5], ARGV[10])
  return out
end
