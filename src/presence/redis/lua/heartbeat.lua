-- Renews this node's lease. KEYS: 1 im:nodes, 2 im:gen. ARGV: 1 node, 2 lease_ms, 3 mode
-- ('claim' refuses an id held by a live node), 4 a fresh generation id (kept only if none is set).
-- Returns {status, previous lease ('' none), now_ms, generation, live nodes, dead node...}; status -1 = id held.
local _, now_us = now()
local now_ms = math.floor(now_us / 1000)
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[3] == 'claim' and prev and tonumber(prev) > now_ms then return { -1, prev, fmt(now_ms) } end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[4], 'NX')
local live = redis.call('ZCOUNT', KEYS[1], '(' .. fmt(now_ms), '+inf')
local out = { 0, prev or '', fmt(now_ms), redis.call('GET', KEYS[2]), live }
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms)) do table.insert(out, n) end
return out
