"""The Lua that changes the index: every key it names is in the `{mrc:idx}` slot.

A member's score is when to look at its key again (milliseconds, Redis's clock): its
expiry, or sooner for fill markers, which rarely outlive their fill. Only the pruner
removes members, and only after finding the key gone, and only if nobody re-added the
member since it looked (the score is unchanged): a key written again after that look is
re-added with a later score, so it is never lost.
"""

from __future__ import annotations

# Both scripts: Redis's clock in milliseconds, and a member's score from its key's TTL
# (-1: none) and its recheck interval ('-': at expiry).
_SCORE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function score_of(ttl, recheck)
  local score
  if ttl < 0 then score = math.huge else score = now + ttl end
  if recheck ~= '-' and now + tonumber(recheck) < score then score = now + tonumber(recheck) end
  return score
end
"""

# KEYS: due, then the sets; ARGV, per member: the member, then "<ttl> <recheck> <sets>":
# ttl_ms (-1: none; '?': read it here, which only a single server allows, the member
# being in another slot), recheck_ms ('-': at expiry), and the member's sets as indexes
# into KEYS joined by ','. Two arguments a member: packing them is most of the
# indexer's own cost. A member whose key is gone is left out. Returns how many were
# indexed.
ADD = (
    _SCORE
    + """
local pending = {}  -- per set: score, member, score, member... for one ZADD each
local earliest = {}
local added = 0
for i = 1, #ARGV, 2 do
  local member = ARGV[i]
  local ttl, recheck, sets = string.match(ARGV[i + 1], '^(%S+) (%S+) (%S+)$')
  if ttl == '?' then ttl = redis.call('PTTL', member) else ttl = tonumber(ttl) end
  if ttl ~= -2 then
    local score = score_of(ttl, recheck)
    for set in string.gmatch(sets, '%d+') do
      set = tonumber(set)
      local args = pending[set]
      if args == nil then args = {}; pending[set] = args end
      args[#args + 1] = score
      args[#args + 1] = member
      if #args >= 2000 then
        redis.call('ZADD', KEYS[set], unpack(args))
        pending[set] = {}
      end
      if earliest[set] == nil or score < earliest[set] then earliest[set] = score end
    end
    added = added + 1
  end
end
for set, args in pairs(pending) do
  if #args > 0 then redis.call('ZADD', KEYS[set], unpack(args)) end
end
for set, score in pairs(earliest) do redis.call('ZADD', KEYS[1], 'LT', score, KEYS[set]) end
return added
"""
)

# KEYS: due, set; ARGV, per member: member, score seen, ttl_ms now
# (-2: gone, -1: none), recheck_ms ('-': at expiry). Returns the members removed.
PRUNE = (
    _SCORE
    + """
local removed = 0
local i = 1
while i <= #ARGV do
  local member, seen, ttl, recheck = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if tonumber(redis.call('ZSCORE', KEYS[2], member)) == tonumber(seen) then
    if ttl == -2 then
      redis.call('ZREM', KEYS[2], member)
      removed = removed + 1
    else
      redis.call('ZADD', KEYS[2], score_of(ttl, recheck), member)
    end
  end
  i = i + 4
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then redis.call('ZREM', KEYS[1], KEYS[2])
else redis.call('ZADD', KEYS[1], first[2], KEYS[2]) end
return removed
"""
)
