import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generateMasterKey, masterKeysFromEnv, resealText, seal, SealError } from '../secrets/sealed.js';

export const SECRETS_HELP = `keyleash secrets — vendor secrets sealed at rest (AES-256-GCM)

Usage:
  keyleash secrets keygen               Print a new random master key
  keyleash secrets seal                 Read a secret on stdin, print it sealed under KEYLEASH_MASTER_KEY
  keyleash secrets rotate --config F    Re-seal every sealed value in F under KEYLEASH_MASTER_KEY,
                                        opening old ones with KEYLEASH_MASTER_KEY_PREVIOUS

Put the sealed value in the config file where the secret would go (test_secret: enc:v1:…). The
master key comes from KEYLEASH_MASTER_KEY or KEYLEASH_MASTER_KEY_FILE, never from the store.

Examples:
  export KEYLEASH_MASTER_KEY=$(keyleash secrets keygen)
  printf %s "$STRIPE_LIVE_SECRET" | keyleash secrets seal
  KEYLEASH_MASTER_KEY=$NEW KEYLEASH_MASTER_KEY_PREVIOUS=$OLD keyleash secrets rotate --config keyleash.yaml

Exit codes: 0 ok, 1 failure, 2 bad usage or no master key.`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export async function runSecretsCommand(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  });
  const [sub] = positionals;
  if (values.help || sub === undefined) {
    process.stdout.write(`${SECRETS_HELP}\n`);
    return sub === undefined && !values.help ? 2 : 0;
  }
  try {
    if (sub === 'keygen') {
      process.stdout.write(`${generateMasterKey()}\n`);
      return 0;
    }
    const keys = masterKeysFromEnv(process.env);
    if (keys.length === 0) {
      process.stderr.write('keyleash: set KEYLEASH_MASTER_KEY (or KEYLEASH_MASTER_KEY_FILE) first\n');
      return 2;
    }
    if (sub === 'seal') {
      const secret = await readStdin();
      if (!secret) {
        process.stderr.write('keyleash: no secret on stdin\n');
        return 2;
      }
      process.stdout.write(`${seal(secret, keys[0]!)}\n`);
      return 0;
    }
    if (sub === 'rotate') {
      const file = values.config ?? process.env.KEYLEASH_CONFIG;
      if (!file) {
        process.stderr.write('keyleash: rotate needs --config FILE\n');
        return 2;
      }
      const { text, count } = resealText(readFileSync(file, 'utf8'), keys, keys[0]!);
      // Written beside the file and renamed over it, so a crash never leaves half a config.
      writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
      process.stdout.write(`re-sealed ${count} secret(s) in ${file} under master key ${keys[0]!.id}\n`);
      return 0;
    }
  } catch (e) {
    if (e instanceof SealError) {
      process.stderr.write(`keyleash: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  process.stderr.write(`keyleash: unknown secrets command "${sub}"\n\n${SECRETS_HELP}\n`);
  return 2;
}
