-- The live entries of a user. KEYS: 1 user hash, 2 im:nodes. Returns the entry values.
local _, now_us = now()
local live = load(KEYS[1], KEYS[2], math.floor(now_us / 1000))
local out = {}
for _, e in ipairs(live) do table.insert(out, value(e)) end
return out
