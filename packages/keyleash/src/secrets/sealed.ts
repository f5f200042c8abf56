import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

// Vendor secrets at rest: a config file may hold `enc:v1:<key id>:<sealed>` instead of a secret,
// sealed with AES-256-GCM under a master key that comes from the environment or a file, never
// from the store. Several master keys may be known at once, so a file sealed under the previous
// key still opens while it is being re-sealed (`keyleash secrets rotate`).

const PREFIX = 'enc:v1:';
const AAD = Buffer.from('keyleash-sealed-secret-v1');

export class SealError extends Error {}

export interface MasterKey {
  id: string;
  key: Buffer;
}

export function parseMasterKey(text: string): MasterKey {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32) throw new SealError('a master key is 32 bytes, given as 64 hex characters or base64');
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 8), key };
}

export function generateMasterKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * The master keys from the environment: the current one from KEYLEASH_MASTER_KEY or
 * KEYLEASH_MASTER_KEY_FILE, older ones (still accepted for opening) from
 * KEYLEASH_MASTER_KEY_PREVIOUS (comma-separated). Empty when none is set.
 */
export function masterKeysFromEnv(env: NodeJS.ProcessEnv): MasterKey[] {
  const keys: MasterKey[] = [];
  const file = env.KEYLEASH_MASTER_KEY_FILE;
  const current = env.KEYLEASH_MASTER_KEY ?? (file ? readFileSync(file, 'utf8') : undefined);
  if (current) keys.push(parseMasterKey(current));
  for (const old of (env.KEYLEASH_MASTER_KEY_PREVIOUS ?? '').split(',').filter((s) => s.trim())) keys.push(parseMasterKey(old));
  return keys;
}

export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX);
}

export function seal(plain: string, master: MasterKey): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(AAD);
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return `${PREFIX}${master.id}:${Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url')}`;
}

export function unseal(value: string, keys: readonly MasterKey[]): string {
  const m = /^enc:v1:([0-9a-f]{8}):([A-Za-z0-9_-]+)$/.exec(value);
  if (!m) throw new SealError('a sealed secret looks like enc:v1:<key id>:<data>');
  const master = keys.find((k) => k.id === m[1]);
  if (!master) throw new SealError(`no master key with id ${m[1]} is configured (set KEYLEASH_MASTER_KEY or KEYLEASH_MASTER_KEY_PREVIOUS)`);
  const raw = Buffer.from(m[2]!, 'base64url');
  if (raw.length < 12 + 16 + 1) throw new SealError('the sealed secret is truncated');
  const decipher = createDecipheriv('aes-256-gcm', master.key, raw.subarray(0, 12));
  decipher.setAAD(AAD);
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  try {
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    throw new SealError(`the sealed secret does not open with master key ${m[1]} (tampered, or the wrong key)`);
  }
}

/** Opens every sealed string in a parsed config; `path` names the field in errors. */
export function unsealTree(value: unknown, keys: readonly MasterKey[], path = ''): unknown {
  if (typeof value === 'string') {
    if (!isSealed(value)) return value;
    try {
      return unseal(value, keys);
    } catch (e) {
      throw new SealError(`${path || 'config'}: ${(e as Error).message}`);
    }
  }
  if (Array.isArray(value)) return value.map((v, i) => unsealTree(v, keys, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unsealTree(v, keys, path ? `${path}.${k}` : k)]));
  }
  return value;
}

/** Re-seals every sealed value in a config file's text under `current`; returns the new text and how many changed. */
export function resealText(text: string, keys: readonly MasterKey[], current: MasterKey): { text: string; count: number } {
  let count = 0;
  const out = text.replace(/enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]+/g, (sealed) => {
    count++;
    return seal(unseal(sealed, keys), current);
  });
  return { text: out, count };
}
