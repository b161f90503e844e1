"""The Lua that changes the index: every key it names is in the `{mrc:idx}` slot.

A member's score is when to look at its key again (milliseconds, Redis's clock): its
expiry, or sooner for fill markers, which rarely outlive their fill. Only the pruner
removes members, and only after finding the key gone, and only if nobody re-added the
member since it looked (the score is unchanged): a key written again after that look is
re-added with a later score, so it is never lost.
"""

from __future__ import annotations

# KEYS: due, then the sets; ARGV, per member: member, ttl_ms (-1: none),
# recheck_ms ('' : at expiry), count of sets, then that many indexes into KEYS.
ADD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local i = 1
while i <= #ARGV do
  local member, ttl, recheck = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local score
  if ttl < 0 then score = math.huge else score = now + ttl end
  if recheck ~= '' and now + tonumber(recheck) < score then score = now + tonumber(recheck) end
  local n = tonumber(ARGV[i + 3])
  for j = 1, n do
    local set = KEYS[tonumber(ARGV[i + 3 + j])]
    redis.call('ZADD', set, score, member)
    redis.call('ZADD', KEYS[1], 'LT', score, set)
  end
  i = i + 4 + n
end
return 0
"""

# KEYS: due, set; ARGV, per member: member, score seen, ttl_ms now
# (-2: gone, -1: none), recheck_ms ('': at expiry). Returns the members removed.
PRUNE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local removed = 0
local i = 1
while i <= #ARGV do
  local member, seen, ttl, recheck = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if tonumber(redis.call('ZSCORE', KEYS[2], member)) == tonumber(seen) then
    if ttl == -2 then
      redis.call('ZREM', KEYS[2], member)
      removed = removed + 1
    else
      local score
      if ttl < 0 then score = math.huge else score = now + ttl end
      if recheck ~= '' and now + tonumber(recheck) < score then score = now + tonumber(recheck) end
      redis.call('ZADD', KEYS[2], score, member)
    end
  end
  i = i + 4
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then redis.call('ZREM', KEYS[1], KEYS[2])
else redis.call('ZADD', KEYS[1], first[2], KEYS[2]) end
return removed
"""
