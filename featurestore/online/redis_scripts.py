"""The Lua scripts of the Redis online store, single server and cluster, in one place.

Every rule the server applies is here once: the never-regress comparison (``PUT``, used by
both write scripts), how a claim continues or replaces a view's generation, how a drop
retires one, and when a watermark may move. The layout they work on is described in
featurestore/online/redis.py (single server) and featurestore/online/redis_cluster.py.

Scripts are registered once per server (``SCRIPT LOAD``) and called by SHA1 (``EVALSHA``);
a ``NOSCRIPT`` reply (a new, restarted or promoted server) makes the caller load them all
and call again.

On a cluster a script may declare keys of one slot only. The meta scripts (claim, drop,
watermark) touch only the project's meta hash, so they run unchanged there. The cluster's
read and write scripts take their first key as ``KEYS[1]`` (which routes the call and gets
the server's MOVED/ASK answer for it) and the other keys as arguments, with the
``allow-cross-slot-keys`` flag: Redis then lets the script touch keys of other slots as long
as this node serves them, and stops the script with "Script attempted to access a non local
key" on the first one it does not (a moved or moving slot), which the caller answers by
sending those keys one call per key.
"""

from __future__ import annotations

import hashlib

# put(key, field, new): writes row ``new`` into ``field`` of hash ``key`` unless the stored
# row's 16-byte (event, created) prefix is greater; 1 when written. The prefixes are compared
# as four big-endian uint32 (exact in Lua's doubles; string '<' would follow the server's
# locale). Equal prefixes overwrite, so re-running a materialization is idempotent.
PUT = """
local unpack4 = struct.unpack
local function put(key, field, new)
  local old = redis.call('HGET', key, field)
  if old then
    local a1, a2, a3, a4 = unpack4('>I4I4I4I4', new)
    local b1, b2, b3, b4 = unpack4('>I4I4I4I4', old)
    local newer
    if a1 ~= b1 then newer = a1 > b1
    elseif a2 ~= b2 then newer = a2 > b2
    elseif a3 ~= b3 then newer = a3 > b3
    else newer = a4 >= b4 end
    if not newer then
      return 0
    end
  end
  redis.call('HSET', key, field, new)
  return 1
end
"""

# Whether the claim ``claim`` ("<fingerprint>:<layout id>:<generation>@<epoch>") is current:
# ``field`` ("view:<view>") holds its first part and the meta hash's ``epoch`` its last. The
# epoch is set by the first claim on an empty meta hash: a server restarted empty gives
# generations from 1 again, and a run holding a claim from before must not pass for the
# new claim of the same number (its rows before the restart are gone).
_CLAIMED = """
local function claimed(meta, field, claim)
  local held = redis.call('HMGET', meta, field, 'epoch')
  return held[1] and (held[1] .. '@' .. (held[2] or '')) == claim
end
"""

# Single server. KEYS[1]: the project's meta hash; KEYS[i + 1]: hashes; ARGV[1]:
# "view:<view>"; ARGV[2]: the run's claim as view:<view> holds it; ARGV[3]: its generation (the
# field); ARGV[i + 3]: the row for KEYS[i + 1]. Nothing is written (-1) unless the claim is
# still the view's; else the number of rows written.
WRITE_SCRIPT = (
    PUT
    + _CLAIMED
    + """
if not claimed(KEYS[1], ARGV[1], ARGV[2]) then
  return -1
end
local field, written = ARGV[3], 0
for i = 2, #KEYS do
  written = written + put(KEYS[i], field, ARGV[i + 2])
end
return written
"""
)

# Single server. KEYS[1]: the project's meta hash; KEYS[2..]: the groups' hashes, in order.
# ARGV: for each group, its key count, its view count, then per view "view:<view>" and the
# identity asked, "<fingerprint>:<layout id>". Returns first one status letter per (group,
# view): "." its generation is that identity's, "x" another identity's (its rows are returned,
# to be counted and refused), "n" no data, "L" data from before generations (tag:<view>); then
# one HMGET reply per hash. A view without a generation reads the empty field name, never a
# generation.
READ_SCRIPT = """#!lua flags=no-writes
local out, k, a = {''}, 2, 1
while a <= #ARGV do
  local nkeys, nviews = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local names = {}
  for i = 1, nviews do
    names[i] = ARGV[a + 2 * i]
  end
  local claims = redis.call('HMGET', KEYS[1], unpack(names))
  local fields, status = {}, {}
  for i = 1, nviews do
    local held, generation = string.match(claims[i] or '', '^(.*):(%d+)$')
    if generation then
      fields[i] = generation
      status[i] = (held == ARGV[a + 2 * i + 1]) and '.' or 'x'
    else
      fields[i] = ''
      local legacy = redis.call('HEXISTS', KEYS[1], 'tag:' .. string.sub(names[i], 6))
      status[i] = (legacy == 1) and 'L' or 'n'
    end
  end
  out[1] = out[1] .. table.concat(status)
  a = a + 2 + 2 * nviews
  for _ = 1, nkeys do
    out[k] = redis.call('HMGET', KEYS[k], unpack(fields))
    k = k + 1
  end
end
return out
"""

# Cluster. KEYS[1]: the first hash; ARGV[1]: n, the number of other hashes; ARGV[2..n+1]:
# those hashes (served by the same node); ARGV[n+2]: the generation (the field); ARGV[n+3..]:
# the row for each hash, KEYS[1]'s first. Returns the number of rows written. No claim check:
# the meta hash lives in another slot (featurestore/online/redis_cluster.py says how stale
# writes are kept out instead).
CLUSTER_WRITE_SCRIPT = (
    "#!lua flags=allow-cross-slot-keys\n"
    + PUT
    + """
local n = tonumber(ARGV[1])
local field = ARGV[n + 2]
local written = put(KEYS[1], field, ARGV[n + 3])
for i = 1, n do
  written = written + put(ARGV[i + 1], field, ARGV[n + 3 + i])
end
return written
"""
)

# Cluster. KEYS[1]: the first hash; ARGV[1]: n, the number of other hashes; ARGV[2..n+1]:
# those hashes (served by the same node); ARGV[n+2..]: the fields to read. One HMGET reply
# per hash, KEYS[1]'s first.
CLUSTER_READ_SCRIPT = """#!lua flags=no-writes,allow-cross-slot-keys
local n = tonumber(ARGV[1])
local fields = {unpack(ARGV, n + 2)}
local out = {redis.call('HMGET', KEYS[1], unpack(fields))}
for i = 1, n do
  out[i + 1] = redis.call('HMGET', ARGV[i + 1], unpack(fields))
end
return out
"""

# Retires what the meta hash KEYS[1] holds of the view named ARGV[1]: its generation and a tag
# from before generations become "retired:<n>" (their rows are garbage to collect), and its
# view:, tag: and watermark: entries go. Returns 1 when something was retired.
_RETIRE = """
local function retire(meta, view)
  local retired = 0
  local claim = redis.call('HGET', meta, 'view:' .. view)
  if claim then
    redis.call('HSET', meta, 'retired:' .. string.match(claim, ':(%d+)$'), view)
    retired = 1
  end
  local legacy = redis.call('HGET', meta, 'tag:' .. view)
  if legacy then
    redis.call('HSET', meta, 'retired:' .. legacy, view)
    retired = 1
  end
  redis.call('HDEL', meta, 'view:' .. view, 'tag:' .. view, 'watermark:' .. view)
  return retired
end
"""

DROP_SCRIPT = _RETIRE + "return retire(KEYS[1], ARGV[1])\n"

# KEYS[1]: meta; ARGV[1]: the view; ARGV[2]: "<fingerprint>:<layout id>"; ARGV[3]: a fresh
# random epoch, kept only when the meta hash has none (_CLAIMED); ARGV[4]: where to start
# counting generations when the meta hash has no counter. Continues the view's
# generation when it stands for that identity, else retires what the view holds and gives a
# new generation. Returns {generation, 1 when something was retired, the epoch}.
CLAIM_SCRIPT = (
    _RETIRE
    + """
local meta, view, identity = KEYS[1], ARGV[1], ARGV[2]
redis.call('HSETNX', meta, 'epoch', ARGV[3])
local epoch = redis.call('HGET', meta, 'epoch')
local held, generation = string.match(
  redis.call('HGET', meta, 'view:' .. view) or '', '^(.*):(%d+)$')
if held == identity then
  return {generation, 0, epoch}
end
local retired = retire(meta, view)
redis.call('HSETNX', meta, 'next_tag', ARGV[4])
generation = redis.call('HINCRBY', meta, 'next_tag', 1)
redis.call('HSET', meta, 'view:' .. view, identity .. ':' .. generation)
return {tostring(generation), retired, epoch}
"""
)

# KEYS[1]: meta; ARGV: "view:<view>", the claim, "watermark:<view>", the value
# ("<end µs>:<created µs>"), the last accepted µs. 0: refused. A watermark whose end is before
# the held one's is not written (a run with a later end finished first): 1 all the same. A held
# end past the accepted range (an older version's) counts as its last moment.
WATERMARK_SCRIPT = (
    _CLAIMED
    + """
if not claimed(KEYS[1], ARGV[1], ARGV[2]) then
  return 0
end
local held = tonumber(string.match(redis.call('HGET', KEYS[1], ARGV[3]) or '', '^(%-?%d+):'))
local new = tonumber(string.match(ARGV[4], '^(%-?%d+):'))
if held and new and math.min(held, tonumber(ARGV[5])) > new then
  return 1
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
"""
)


# --- aggregated views' tiles (featurestore/online/redis_tiles.py) ------------------------
# A tile is a field "<generation>:<level>:<tile>" of its key's hash, written with PUT (its
# 16-byte prefix is (tile start, run end): never replaced by one from an earlier run end).

# Single server. KEYS[1]: meta; KEYS[i + 1]: hashes. ARGV[1]: "view:<view>"; ARGV[2]: the claim
# as view:<view> holds it; ARGV[3]: the generation; then per hash: its tile count m, then m
# (tile id, row) pairs. -1 when the claim is not current (nothing written), else the tiles
# written.
TILE_WRITE_SCRIPT = (
    PUT
    + _CLAIMED
    + """
if not claimed(KEYS[1], ARGV[1], ARGV[2]) then
  return -1
end
local prefix = ARGV[3] .. ':'
local a, written = 4, 0
for i = 2, #KEYS do
  local m = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, m do
    written = written + put(KEYS[i], prefix .. ARGV[a], ARGV[a + 1])
    a = a + 2
  end
end
return written
"""
)

# Cluster. KEYS[1]: one hash; ARGV[1]: the generation; ARGV[2..]: (tile id, row) pairs. The
# claim is checked after the call (the meta hash is in another slot), as for rows.
CLUSTER_TILE_WRITE_SCRIPT = (
    PUT
    + _CLAIMED
    + """
local prefix = ARGV[1] .. ':'
local written = 0
for a = 2, #ARGV, 2 do
  written = written + put(KEYS[1], prefix .. ARGV[a], ARGV[a + 1])
end
return written
"""
)

# Single server. KEYS[1]: meta; KEYS[2..]: hashes. ARGV[1]: "view:<view>"; ARGV[2]: the identity
# asked, "<fingerprint>:<layout id>"; ARGV[3]: "watermark:<view>"; ARGV[4..]: tile ids. Returns
# {"n"} (no data), {"x", n} (another identity's data: n of its tiles among those asked), or
# {".", watermark or "", one HMGET reply per hash}. A read may ask for thousands of tiles
# (second slides over hours): Lua's unpack takes at most 8,000 values, so HMGET goes by parts.
TILE_READ_SCRIPT = """#!lua flags=no-writes
local held, generation = string.match(
  redis.call('HGET', KEYS[1], ARGV[1]) or '', '^(.*):(%d+)$')
if not generation then
  return {'n'}
end
local fields = {}
for i = 4, #ARGV do
  fields[i - 3] = generation .. ':' .. ARGV[i]
end
local function hmget(key)
  local got = {}
  for first = 1, #fields, 1000 do
    local part = redis.call('HMGET', key, unpack(fields, first, math.min(first + 999, #fields)))
    for j = 1, #part do
      got[first + j - 1] = part[j]
    end
  end
  return got
end
if held ~= ARGV[2] then
  local refused = 0
  for k = 2, #KEYS do
    for _, v in ipairs(hmget(KEYS[k])) do
      if v then refused = refused + 1 end
    end
  end
  return {'x', refused}
end
local out = {'.', redis.call('HGET', KEYS[1], ARGV[3]) or ''}
for k = 2, #KEYS do
  out[k + 1] = hmget(KEYS[k])
end
return out
"""

# Both. KEYS: hashes (one on a cluster). ARGV[1]: the generation; then (level, first tile number
# kept) pairs. Deletes the generation's tiles of those levels numbered below the first kept.
TILE_SWEEP_SCRIPT = """
local generation = ARGV[1]
local first = {}
for i = 2, #ARGV, 2 do
  first[ARGV[i]] = tonumber(ARGV[i + 1])
end
local removed = 0
for _, key in ipairs(KEYS) do
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local g, level, number = string.match(field, '^(%d+):(%d+):(%-?%d+)$')
    if g == generation and first[level] and tonumber(number) < first[level] then
      removed = removed + redis.call('HDEL', key, field)
    end
  end
end
return removed
"""

# Single server. KEYS: hashes; ARGV: retired generations. Deletes their tiles (fields
# "<generation>:..."), beside the HDEL of their rows (a drop's collection pass).
TILE_COLLECT_SCRIPT = """
local retired = {}
for _, g in ipairs(ARGV) do
  retired[g] = true
end
local removed = 0
for _, key in ipairs(KEYS) do
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local g = string.match(field, '^(%d+):')
    if g and retired[g] then
      removed = removed + redis.call('HDEL', key, field)
    end
  end
end
return removed
"""


def sha1(script: str) -> str:
    """The SHA1 ``EVALSHA`` calls a script by."""
    return hashlib.sha1(script.encode()).hexdigest()


SINGLE_SERVER_SCRIPTS = (
    WRITE_SCRIPT,
    READ_SCRIPT,
    DROP_SCRIPT,
    CLAIM_SCRIPT,
    WATERMARK_SCRIPT,
    TILE_WRITE_SCRIPT,
    TILE_READ_SCRIPT,
    TILE_SWEEP_SCRIPT,
    TILE_COLLECT_SCRIPT,
)
CLUSTER_SCRIPTS = (
    CLUSTER_WRITE_SCRIPT,
    CLUSTER_READ_SCRIPT,
    DROP_SCRIPT,
    CLAIM_SCRIPT,
    WATERMARK_SCRIPT,
    CLUSTER_TILE_WRITE_SCRIPT,
    TILE_SWEEP_SCRIPT,
)
WRITE_SHA, READ_SHA = sha1(WRITE_SCRIPT), sha1(READ_SCRIPT)
CLUSTER_WRITE_SHA, CLUSTER_READ_SHA = sha1(CLUSTER_WRITE_SCRIPT), sha1(CLUSTER_READ_SCRIPT)
DROP_SHA, CLAIM_SHA, WATERMARK_SHA = sha1(DROP_SCRIPT), sha1(CLAIM_SCRIPT), sha1(WATERMARK_SCRIPT)
TILE_WRITE_SHA, TILE_READ_SHA = sha1(TILE_WRITE_SCRIPT), sha1(TILE_READ_SCRIPT)
CLUSTER_TILE_WRITE_SHA = sha1(CLUSTER_TILE_WRITE_SCRIPT)
TILE_SWEEP_SHA, TILE_COLLECT_SHA = sha1(TILE_SWEEP_SCRIPT), sha1(TILE_COLLECT_SCRIPT)
