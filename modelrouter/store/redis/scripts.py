"""The Lua programs the Redis store runs inside Redis: each call is atomic towards other clients.

- :data:`LUA`: one statistics batch (store/redis/batch.py builds its arguments and explains
  what it checks and writes: totals, not increments, and a marker set to ``started`` first and
  ``1`` last, so a batch a kill tore in Redis's AOF is never counted twice).
- :data:`CONTROL_LUA`: the routing state's compare-and-set (control.py).
- :data:`HASH_POP_LUA`: the idempotent pop of a worker's inbox or label hash (control.py);
  :data:`LABEL_PUSH_LUA`: the hand-over of labels to their owner's hash.
- :data:`RELEASE_LUA`: the release of feedback claims whose replies were lost (control.py).

Every script writes fields by name or totals it computed, never a relative change a replay
would repeat (the exceptions, a legacy list's ``RPUSH`` and ``LTRIM``, are described in
control.py): Redis 7.0 can replay part of a script's writes a second time after a kill
(batch.py). Each script's keys and arguments are described above it.

Thread safety: constants.
"""

from __future__ import annotations

__all__ = ["CONTROL_LUA", "HASH_POP_LUA", "LABEL_PUSH_LUA", "LUA", "RELEASE_LUA"]

# A Lua prelude of the scripts below: redis.call(cmd, key, ...) with the items in chunks of
# ``size`` (Redis's Lua unpacks at most ~8,000 values in one call)
EACH = """
local function each(cmd, key, items, size)
  for i = 1, #items, size do
    redis.call(cmd, key, unpack(items, i, math.min(i + size - 1, #items)))
  end
end
"""

# KEYS[1] = batch marker, KEYS[2] = counters hash, KEYS[3] = refused hash (reason -> batches),
# KEYS[4..] = the hashes of the ops; ARGV[1] = marker TTL, ARGV[2] = JSON list of
# [op, key index, field, value] (one argument: packing 4 arguments per op in redis-py costs more
# than the whole Lua loop), ARGV[3] = number of ops (for the flusher's count), ARGV[4] = JSON
# list of [counter, n]: what the batch holds, added to the counters if it is refused
LUA = EACH + """
local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local INT_LIMIT = 9007199254740992  -- 2**53: past it a double no longer counts by one
-- the totals this script adds to, in the order first met: {key, field, total, integer}
local totals, order = {}, {}
-- add d to key's field (its stored value read once); nil, or a reason and what was wrong
local function add(k, f, d, int)
  local e = totals[k .. ' ' .. f]
  if e == nil then
    local raw = redis.call('HGET', k, f)
    local cur = 0
    if raw then
      cur = tonumber(raw)
      if cur == nil or not finite(cur) or string.find(raw, '[xXnN]')
          or (int and not string.find(raw, '^%-?%d+$')) then
        return 'stored', 'stored value ' .. string.sub(raw, 1, 40)
      end
    end
    e = {k, f, cur, int}
    totals[k .. ' ' .. f] = e
    order[#order + 1] = e
  elseif e[4] ~= int then
    return 'ops', 'mixes integer and float increments of ' .. f
  end
  local s = e[3] + d
  if not finite(s) or (int and (s >= INT_LIMIT or s <= -INT_LIMIT)) then
    return 'overflow', 'the total would be ' .. tostring(s)
  end
  e[3] = s
end
-- a total as Redis keeps it: an integer, or the shortest of 15-17 digits that reads back
local function num(x, int)
  if int then return string.format('%d', x) end
  for _, p in ipairs({'%.15g', '%.16g'}) do
    local s = string.format(p, x)
    if tonumber(s) == x then return s end
  end
  return string.format('%.17g', x)
end
-- every total added so far, one HSET per key
local function write()
  local by, keys = {}, {}
  for _, e in ipairs(order) do
    if by[e[1]] == nil then by[e[1]] = {}; keys[#keys + 1] = e[1] end
    local b = by[e[1]]
    b[#b + 1] = e[2]
    b[#b + 1] = num(e[3], e[4])
  end
  for _, k in ipairs(keys) do each('HSET', k, by[k], 2000) end
end
local function kind_of(cache, k)
  local t = cache[k]
  if t == nil then
    t = redis.call('TYPE', k)['ok']
    cache[k] = t
  end
  return t
end
local function refuse(reason, detail)
  for _, k in ipairs({KEYS[2], KEYS[3]}) do
    local t = redis.call('TYPE', k)['ok']
    if t ~= 'hash' and t ~= 'none' then
      return redis.error_reply('modelrouter: batch refused (' .. reason .. ': ' .. detail ..
                               ') and not countable: ' .. k .. ' is a ' .. t)
    end
  end
  totals, order = {}, {}  -- what the batch added is dropped; only the refusal is counted
  local adds = {}
  local ok, lost = pcall(cjson.decode, ARGV[4])
  if ok and type(lost) == 'table' then
    for _, c in ipairs(lost) do
      if type(c) == 'table' and type(c[1]) == 'string' and type(c[2]) == 'number' then
        adds[#adds + 1] = {KEYS[2], c[1], c[2]}
      end
    end
  end
  adds[#adds + 1] = {KEYS[2], 'refused_batches', 1}
  adds[#adds + 1] = {KEYS[3], reason, 1}
  for _, a in ipairs(adds) do
    local _why, what = add(a[1], a[2], a[3], true)
    if what then
      return redis.error_reply('modelrouter: batch refused (' .. reason .. ': ' .. detail ..
                               ') and not countable: ' .. a[1] .. ' ' .. a[2] .. ': ' .. what)
    end
  end
  write()
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
  return {-1, reason, detail}
end
local seen = redis.call('TYPE', KEYS[1])['ok']
if seen ~= 'none' then
  if seen == 'string' and redis.call('GET', KEYS[1]) == 'started' then
    return refuse('torn', 'Redis replayed part of this batch from its AOF before the retry')
  end
  return 0
end
local ok, ops = pcall(cjson.decode, ARGV[2])
if not ok or type(ops) ~= 'table' then
  return refuse('ops', 'the batch does not decode: ' .. tostring(ops))
end
local kinds = {}
for i = 1, #ops do
  local o = ops[i]
  if type(o) ~= 'table' or type(o[2]) ~= 'number' or o[2] < 4 or KEYS[o[2]] == nil
      or type(o[3]) ~= 'string' or type(o[4]) ~= 'string' then
    return refuse('ops', 'op ' .. i .. ' is malformed')
  end
  local op, k, f, v = o[1], KEYS[o[2]], o[3], o[4]
  local t = kind_of(kinds, k)
  if t ~= 'hash' and t ~= 'none' then return refuse('type', k .. ' is a ' .. t) end
  if op == 'p' then
    local ttl, li = string.match(f, '^(%d+):(%d+)$')
    local lk = KEYS[tonumber(li or '0')]
    if ttl == nil or tonumber(li) < 4 or lk == nil then
      return refuse('ops', 'op ' .. i .. ': forward ' .. string.sub(f, 1, 40))
    end
    local lt = kind_of(kinds, lk)
    if lt ~= 'list' and lt ~= 'none' then return refuse('type', lk .. ' is a ' .. lt) end
  elseif op == 'i' or op == 'f' then
    local d = tonumber(v)
    if d == nil or not finite(d) or string.find(v, '[xXnN]')
        or (op == 'i' and not string.find(v, '^%-?%d+$')) then
      return refuse('increment', k .. ' op ' .. i .. ': increment ' .. string.sub(v, 1, 40))
    end
    local why, what = add(k, f, d, op == 'i')
    if why then return refuse(why, k .. ' op ' .. i .. ': ' .. what) end
  elseif op ~= 'n' then
    return refuse('ops', 'op ' .. i .. ' has kind ' .. tostring(op))
  end
end
redis.call('SET', KEYS[1], 'started', 'EX', ARGV[1])
write()
for i = 1, #ops do
  local o = ops[i]
  local op, k, f, v = o[1], KEYS[o[2]], o[3], o[4]
  if op == 'p' then  -- a field per op of this batch: written again by a replay, not added
    local ttl, li = string.match(f, '^(%d+):(%d+)$')
    if redis.call('EXISTS', k) == 1 then
      redis.call('HSET', k, KEYS[1] .. '#' .. i, v)
    else  -- the owner has not registered its hash: an older version, or not polled yet
      k = KEYS[tonumber(li)]
      redis.call('RPUSH', k, v)
    end
    redis.call('PEXPIRE', k, ttl)
  elseif op == 'n' and redis.call('HEXISTS', k, f) == 0 then
    redis.call('HSET', k, f, v)  -- (logged as this HSET: see batch.py on set-if-absent)
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""

# KEYS[1] = control hash, KEYS[2] = epochs hash; ARGV[1] = expected epoch, ARGV[2] = new epoch,
# ARGV[3] = record JSON, ARGV[4] = the epoch's JSON for the epochs hash. An epochs entry equal
# to ARGV[4] (its time included) is this very change, retried after its reply was lost: it was
# installed (1), even if another worker has published after it since.
CONTROL_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if cur ~= tonumber(ARGV[1]) then
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[4] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'record', ARGV[3])
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then  -- set if absent, logged as an HSET
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
end
return 1
"""

# The pop of a worker's inbox hash: the values forwarded to it (fwd:<owner>) or the labels
# handed to it (lbl:<owner>). KEYS[1] = the hash (field: a name its sender chose, value: the
# entry), KEYS[2] = its legacy list (older senders, and senders before the owner's first poll),
# KEYS[3] = this pop's receipt (a hash), KEYS[4..] = receipts to delete; ARGV[1] = most entries
# taken, ARGV[2] = receipt TTL (s), ARGV[3] = the hash's TTL (ms). Returns the entries taken as
# field, value, field, value, ...: a list entry's field is '#' and its 10-digit position (so
# the list, the older, sorts first), and a key of another type found at KEYS[1] (another
# client wrote it) is deleted and reported once as the field '!type' (its type the value). The
# hash is registered with an empty field (senders write to it only if it exists) and kept
# alive while its owner polls, at most twice a TTL. Every write names its field, so a replay of
# part of this script (a pop torn in the AOF by a kill: batch.py) deletes and copies the same
# fields again and takes nothing twice; a pop whose receipt exists is a retry and returns it.
HASH_POP_LUA = EACH + """
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
local kind = redis.call('TYPE', KEYS[3])['ok']
if kind == 'hash' then return redis.call('HGETALL', KEYS[3]) end
if kind ~= 'none' then redis.call('DEL', KEYS[3]) end
local ttl = tonumber(ARGV[3])
local receipt = {}
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'hash' and t ~= 'none' then
  redis.call('DEL', KEYS[1])
  receipt[1], receipt[2] = '!type', t
  t = 'none'
end
if t == 'none' or redis.call('PTTL', KEYS[1]) < ttl / 2 then
  redis.call('HSET', KEYS[1], '', '')
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local n = tonumber(ARGV[1])
local fields, seen, taken = {}, {}, 0
local cursor = '0'
repeat
  local r = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', n)
  cursor = r[1]
  for i = 1, #r[2], 2 do
    local f = r[2][i]
    if f ~= '' and not seen[f] and taken < n then
      seen[f] = true
      taken = taken + 1
      fields[taken] = f
      receipt[#receipt + 1] = f
      receipt[#receipt + 1] = r[2][i + 1]
    end
  end
until cursor == '0' or taken >= n
if taken < n and redis.call('TYPE', KEYS[2])['ok'] == 'list' then
  local items = redis.call('LRANGE', KEYS[2], 0, n - taken - 1)
  if #items > 0 then redis.call('LTRIM', KEYS[2], #items, -1) end
  for i = 1, #items do
    receipt[#receipt + 1] = string.format('#%010d', i)
    receipt[#receipt + 1] = items[i]
  end
end
if #receipt == 0 then return {} end
each('HDEL', KEYS[1], fields, 1000)
each('HSET', KEYS[3], receipt, 2000)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return receipt
"""

# The hand-over of labels to one owner. KEYS[1] = its label hash, KEYS[2] = its legacy list,
# KEYS[3] = this push's marker; ARGV[1] = the TTL of the hash or list (ms), ARGV[2] = the
# marker's TTL (s), ARGV[3..] = field, value, field, value, ... (each field chosen by the
# sender). A marker that exists means this very push ran and its reply was lost: nothing is
# written again (the owner may have taken the labels since). Once the owner has registered its
# hash (its first pop: :data:`HASH_POP_LUA`), each label is written to its own field, so a
# replay of part of this script writes the same fields again and adds nothing; before that
# (or for an older owner, which reads the list) the values are pushed to the list. A key of
# another type at the list's name (another client wrote it) is deleted first, so it cannot
# hold up every later hand-over (one at the hash's name is the pop's to delete and count;
# until then the list is used). Returns the type of the key deleted, or ''.
LABEL_PUSH_LUA = EACH + """
if redis.call('EXISTS', KEYS[3]) == 1 then return '' end
local gone = redis.call('TYPE', KEYS[2])['ok']
if gone == 'list' or gone == 'none' then gone = '' else redis.call('DEL', KEYS[2]) end
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  local kv = {}
  for i = 3, #ARGV do kv[#kv + 1] = ARGV[i] end
  each('HSET', KEYS[1], kv, 2000)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
else
  local values = {}
  for i = 4, #ARGV, 2 do values[#values + 1] = ARGV[i] end
  each('RPUSH', KEYS[2], values, 1000)
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
return gone
"""

# KEYS = claims, ARGV = their ids: each is deleted if it still holds its id; returns how many
RELEASE_LUA = """
local n = 0
for i = 1, #KEYS do
  if redis.call('TYPE', KEYS[i])['ok'] == 'string' and redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
"""
