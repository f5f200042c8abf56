// Lua scripts: each runs atomically in Redis, so a check and the change it guards are one step
// even with many gateway replicas calling at once.
//
// One hash per key, KEYS[1] = <prefix>k:<key id>, fields:
//   e  epoch (must equal keys.epoch in Postgres)   r  1 when revoked
//   x  expires_at (ms)                              c  daily cap in micros, -1 for none
//   f  1 when the hash was made with the key, so a missing day means nothing spent yet
//   d:<YYYY-MM-DD>  settled spend + open reservations that day, in micros
// Time is always the caller's `now`, like the SQLite backend: one clock per decision.

/**
 * Check and reserve, against the key, every key it was narrowed from and every budget it is
 * attached to, all or nothing.
 * ARGV: 1 day, 2 amount, 3 now, 4 expected key epoch ('' = any), 5 budget hash prefix
 * (`<prefix>b:`), 6 JSON {budget id: expected epoch} ('' = any), 7 '1' to apply rate limits,
 * 8 key hash prefix (`<prefix>k:`), 9 JSON {ancestor id: expected epoch} ('' = any).
 * Returns {'ok', key spent, key epoch, tenant, number of ancestors, then per ancestor: id, epoch,
 * then per budget: id, epoch, window, spent before, limit} or a refusal, or
 * 'nostate'/'nospend' (key) / 'nostate_parent'/'nospend_parent' (id) /
 * 'nostate_budget'/'nospend_budget' (tenant, id[, window]) to rebuild.
 *
 * A budget hash (<prefix>b:<tenant>:<id>) has: e epoch (= budgets.epoch), l limit in micros,
 * p period (day/month/total), z 1 when frozen, f 1 when made with the budget, w:<window> spend.
 * The key hash adds: t tenant, b JSON array of its budget ids (absent: none), a JSON array of
 * the keys it was narrowed from (absent: none); each of those is a key hash of its own.
 * Both may hold a token bucket: rl requests, rp period ms, rt tokens left, ru last update (ms).
 * Buckets are not durable: a rebuilt hash starts with a full bucket.
 */
export const RESERVE = `
local h = KEYS[1]
local day = ARGV[1]
local amount = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local st = redis.call('HMGET', h, 'e', 'r', 'x', 'c', 'f', 'd:' .. day, 't', 'b', 'rl', 'rp', 'rt', 'ru', 'a')
if not st[1] then return {'nostate'} end
if ARGV[4] ~= '' and st[1] ~= ARGV[4] then return {'nostate'} end
if st[2] == '1' then return {'key_revoked'} end
if tonumber(st[3]) <= tonumber(ARGV[3]) then return {'key_expired'} end
local spent = st[6]
if spent then spent = tonumber(spent) elseif st[5] == '1' then spent = 0 else return {'nospend'} end
local anc = {}
if st[13] and st[13] ~= '[]' then
  local aexpect = nil
  if ARGV[9] ~= '' then aexpect = cjson.decode(ARGV[9]) end
  for i, id in ipairs(cjson.decode(st[13])) do
    local k = ARGV[8] .. id
    local a = redis.call('HMGET', k, 'e', 'r', 'x', 'c', 'f', 'd:' .. day)
    if not a[1] then return {'nostate_parent', id} end
    if aexpect and aexpect[id] ~= nil and a[1] ~= tostring(aexpect[id]) then return {'nostate_parent', id} end
    if a[2] == '1' then return {'key_revoked'} end
    if tonumber(a[3]) <= now then return {'key_expired'} end
    local s = a[6]
    if s then s = tonumber(s) elseif a[5] == '1' then s = 0 else return {'nospend_parent', id} end
    anc[i] = {k = k, id = id, e = tonumber(a[1]), c = tonumber(a[4]), s = s}
  end
end
local ids = {}
if st[8] and st[8] ~= '[]' then ids = cjson.decode(st[8]) end
local expect = nil
if ARGV[6] ~= '' then expect = cjson.decode(ARGV[6]) end
local tenant = st[7] or 'default'
local bs = {}
for i, id in ipairs(ids) do
  local k = ARGV[5] .. tenant .. ':' .. id
  local b = redis.call('HMGET', k, 'e', 'l', 'p', 'z', 'f', 'rl', 'rp', 'rt', 'ru')
  if not b[1] then return {'nostate_budget', tenant, id} end
  if expect and expect[id] ~= nil and b[1] ~= tostring(expect[id]) then return {'nostate_budget', tenant, id} end
  if b[4] == '1' then return {'budget_frozen', id} end
  local w = day
  if b[3] == 'month' then w = string.sub(day, 1, 7) elseif b[3] == 'total' then w = 'total' end
  bs[i] = {k = k, id = id, e = tonumber(b[1]), l = tonumber(b[2]), p = b[3], f = b[5], w = w, rl = b[6], rp = b[7], rt = b[8], ru = b[9]}
end
local takes = {}
if ARGV[7] == '1' then
  local function level(rl, rp, rt, ru)
    rl = tonumber(rl)
    if not rt then return rl end
    local el = now - tonumber(ru)
    if el < 0 then el = 0 end
    local t = tonumber(rt) + el * rl / tonumber(rp)
    if t > rl then t = rl end
    return t
  end
  local function bucket(hk, kind, id, rl, rp, rt, ru)
    if not rl or rl == '' then return nil end
    local t = level(rl, rp, rt, ru)
    if t < 1 then return {'rate_limited', kind, id, math.ceil((1 - t) * tonumber(rp) / tonumber(rl))} end
    takes[#takes + 1] = {hk, t - 1}
    return nil
  end
  local refused = bucket(h, 'key', '', st[9], st[10], st[11], st[12])
  if refused then return refused end
  for i, b in ipairs(bs) do
    refused = bucket(b.k, 'budget', b.id, b.rl, b.rp, b.rt, b.ru)
    if refused then return refused end
  end
end
local cap = tonumber(st[4])
if cap >= 0 and spent + amount > cap then return {'cap_exhausted', spent, cap} end
for i, a in ipairs(anc) do
  if a.c >= 0 and a.s + amount > a.c then return {'parent_exhausted', a.id, a.s, a.c} end
end
for i, b in ipairs(bs) do
  local s = redis.call('HGET', b.k, 'w:' .. b.w)
  if s then s = tonumber(s) elseif b.f == '1' then s = 0 else return {'nospend_budget', tenant, b.id, b.w} end
  if s + amount > b.l then return {'budget_exhausted', b.id, s, b.l, b.p, b.w} end
  b.s = s
end
for i, tk in ipairs(takes) do
  redis.call('HSET', tk[1], 'rt', tostring(tk[2]), 'ru', ARGV[3])
end
local out = {'ok', redis.call('HINCRBY', h, 'd:' .. day, amount), tonumber(st[1]), tenant, #anc}
for i, a in ipairs(anc) do
  redis.call('HINCRBY', a.k, 'd:' .. day, amount)
  out[#out + 1] = a.id
  out[#out + 1] = a.e
end
for i, b in ipairs(bs) do
  redis.call('HINCRBY', b.k, 'w:' .. b.w, amount)
  out[#out + 1] = b.id
  out[#out + 1] = b.e
  out[#out + 1] = b.w
  out[#out + 1] = b.s
  out[#out + 1] = b.l
end
return out
`;

/** Extending uses the same checks, with the epochs the reservation's transaction holds. */
export const EXTEND = RESERVE;

/**
 * Adds to several counters, each only if its hash is still at the given epoch and has the
 * field. KEYS: the hashes; ARGV: field, delta, epoch for each, in order.
 */
export const ADJUST_MANY = `
for i, k in ipairs(KEYS) do
  local f, d, e = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if redis.call('HGET', k, 'e') == e and redis.call('HEXISTS', k, f) == 1 then redis.call('HINCRBY', k, f, d) end
end
return 1
`;

/** Writes a budget's state. ARGV: epoch, limit, period, frozen, fresh, rate requests, rate period ms ('' = none). */
export const BINIT = `
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'l', ARGV[2], 'p', ARGV[3], 'z', ARGV[4], 'f', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'rl', ARGV[6], 'rp', ARGV[7]) end
return 1
`;

/** Updates a budget's limit, frozen flag and rate (ARGV[4], ARGV[5]; '' = none) if the hash is at epoch ARGV[1]. */
export const BSET = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'z', ARGV[3])
if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'rl', 'rp', 'rt', 'ru')
elseif redis.call('HGET', KEYS[1], 'rl') ~= ARGV[4] or redis.call('HGET', KEYS[1], 'rp') ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'rl', ARGV[4], 'rp', ARGV[5])
  redis.call('HDEL', KEYS[1], 'rt', 'ru')
end
return 1
`;

/** Sets window ARGV[1] to ARGV[2] unless already there; 0 when the hash is not epoch ARGV[3]. */
export const BINIT_WIN = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[3] then return 0 end
redis.call('HSETNX', KEYS[1], 'w:' .. ARGV[1], ARGV[2])
return 1
`;

/** Adds ARGV[2] (may be negative) to day ARGV[1] if the hash is still epoch ARGV[3] and has that day. */
export const ADJUST = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[3] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'd:' .. ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
return 1
`;

/**
 * Writes a key's state. ARGV: epoch, revoked, expires_at, cap, fresh, ttl ms, only-if-absent,
 * tenant, budget ids (JSON array), rate requests and period ms ('' for none), ancestor ids
 * (JSON array).
 */
export const INIT = `
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'r', ARGV[2], 'x', ARGV[3], 'c', ARGV[4], 'f', ARGV[5], 't', ARGV[8], 'b', ARGV[9])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'rl', ARGV[10], 'rp', ARGV[11]) end
if ARGV[12] ~= '[]' then redis.call('HSET', KEYS[1], 'a', ARGV[12]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
`;

/** Sets day ARGV[1] to ARGV[2] unless already there; 0 when the hash is not epoch ARGV[3]. */
export const INIT_DAY = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[3] then return 0 end
redis.call('HSETNX', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
return 1
`;

/** Brings a key's expiry forward to ARGV[1] if Redis holds its state and it is later. */
export const SHORTEN = `
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) > tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'x', ARGV[1]) end
return 1
`;

/** Marks a key revoked if Redis holds its state (otherwise a rebuild reads it from Postgres). */
export const REVOKE = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'r', '1') end
return 1
`;
