// Lua scripts: each runs atomically in Redis, so a check and the change it guards are one step
// even with many gateway replicas calling at once.
//
// One hash per key, KEYS[1] = <prefix>k:<key id>, fields:
//   e  epoch (must equal keys.epoch in Postgres)   r  1 when revoked
//   x  expires_at (ms)                              c  daily cap in micros, -1 for none
//   f  1 when the hash was made with the key, so a missing day means nothing spent yet
//   d:<YYYY-MM-DD>  settled spend + open reservations that day, in micros
// Time is always the caller's `now`, like the SQLite backend: one clock per decision.

/** Shared checks; sets `spent` (or returns early). ARGV[1] day, ARGV[2] amount, ARGV[3] now. */
const CHECK = `
local h = KEYS[1]
local st = redis.call('HMGET', h, 'e', 'r', 'x', 'c', 'f', 'd:' .. ARGV[1])
if not st[1] then return {'nostate'} end
if EPOCH_MISMATCH then return {'nostate'} end
if st[2] == '1' then return {'key_revoked'} end
if tonumber(st[3]) <= tonumber(ARGV[3]) then return {'key_expired'} end
local spent = st[6]
if spent then spent = tonumber(spent) elseif st[5] == '1' then spent = 0 else return {'nospend'} end
local amount = tonumber(ARGV[2])
local cap = tonumber(st[4])
if cap >= 0 and spent + amount > cap then return {'cap_exhausted', spent, cap} end
return {'ok', redis.call('HINCRBY', h, 'd:' .. ARGV[1], amount), tonumber(st[1])}
`;

/** Check and reserve. Returns {'ok', spent, epoch} or a refusal, or 'nostate'/'nospend' to rebuild. */
export const RESERVE = CHECK.replace('EPOCH_MISMATCH', 'false');

/** Like RESERVE, for growing an open reservation; ARGV[4] is the epoch it was recorded in. */
export const EXTEND = CHECK.replace('EPOCH_MISMATCH', 'st[1] ~= ARGV[4]');

/** Adds ARGV[2] (may be negative) to day ARGV[1] if the hash is still epoch ARGV[3] and has that day. */
export const ADJUST = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[3] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'd:' .. ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
return 1
`;

/** Writes a key's state. ARGV: epoch, revoked, expires_at, cap, fresh, ttl ms, only-if-absent. */
export const INIT = `
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'r', ARGV[2], 'x', ARGV[3], 'c', ARGV[4], 'f', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
`;

/** Sets day ARGV[1] to ARGV[2] unless already there; 0 when the hash is not epoch ARGV[3]. */
export const INIT_DAY = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[3] then return 0 end
redis.call('HSETNX', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
return 1
`;

/** Marks a key revoked if Redis holds its state (otherwise a rebuild reads it from Postgres). */
export const REVOKE = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'r', '1') end
return 1
`;
