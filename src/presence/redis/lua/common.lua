-- Shared helpers, prepended to every script.
-- An entry value: sid|node|order|expire_at|platform|ip|iid  (iid last: it may contain '|'; '' = none)
local function parse(v)
  local sid, node, order, exp, plat, ip, iid =
    string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if not sid then return nil end
  return { sid = sid, node = node, order = tonumber(order), exp = tonumber(exp), plat = plat, ip = ip, iid = iid }
end
local function fmt(n) return string.format('%.0f', n) end
local function value(e)
  return e.sid .. '|' .. e.node .. '|' .. fmt(e.order) .. '|' .. fmt(e.exp) .. '|' .. e.plat .. '|' .. e.ip .. '|' .. e.iid
end
local function now()
  local t = redis.call('TIME')
  local s = tonumber(t[1])
  return s, s * 1000000 + tonumber(t[2])
end
-- Live entries of a user hash: not expired (now_ms > exp * 1000 is expired) and on a node whose lease
-- has not lapsed. Returns the list (each with .field) and the dead ones; a dead one whose node is
-- still in im:nodes with a lapsed lease has .lapsed set (the sweeper will remove it, with its webhook).
local function load(hash, nodes, now_ms)
  local flat = redis.call('HGETALL', hash)
  local live, dead, lease = {}, {}, {}
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, 2) == 'e:' then
      local e = parse(flat[i + 1])
      if e then
        e.field = f
        local l = lease[e.node]
        if l == nil then
          l = tonumber(redis.call('ZSCORE', nodes, e.node) or '0')
          lease[e.node] = l
        end
        if now_ms > e.exp * 1000 or l <= now_ms then
          e.lapsed = l > 0 and l <= now_ms
          table.insert(dead, e)
        else
          table.insert(live, e)
        end
      end
    end
  end
  return live, dead
end
local function drop_if_empty(hash)
  for _, f in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(f, 1, 2) == 'e:' then return end
  end
  redis.call('DEL', hash)
end
