import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

// The write endpoints the official stripe npm package knows, read from its resource files
// (`this._makeRequest('POST', `/v1/charges/${encodeURIComponent(id)}/capture`, …)`). Tests and
// the docs generator use it; the proxy never does.

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? filesUnder(join(dir, d.name)) : d.name.endsWith('.js') ? [join(dir, d.name)] : [],
  );
}

/** "METHOD /path" for every POST and DELETE of the installed stripe package, `{id}` for each path parameter. */
export function stripeSdkWriteEndpoints(): string[] {
  const resources = join(stripePackageDir(), 'cjs', 'resources');
  const out = new Set<string>();
  const call = /_makeRequest\(\s*'(POST|DELETE)',\s*(?:'([^']*)'|`([^`]*)`)/g;
  for (const file of filesUnder(resources)) {
    for (const m of readFileSync(file, 'utf8').matchAll(call)) {
      const path = (m[2] ?? m[3] ?? '').replace(/\$\{[^}]*\}/g, '{id}');
      out.add(`${m[1]} ${path}`);
    }
  }
  return [...out].sort();
}

/** The installed stripe package's directory (its exports hide package.json from resolve()). */
function stripePackageDir(): string {
  let dir = dirname(createRequire(import.meta.url).resolve('stripe'));
  while (!existsSync(join(dir, 'package.json')) || basename(dir) !== 'stripe') {
    const up = dirname(dir);
    if (up === dir) throw new Error('the stripe package is not installed');
    dir = up;
  }
  return dir;
}

export function stripeSdkVersion(): string {
  return (JSON.parse(readFileSync(join(stripePackageDir(), 'package.json'), 'utf8')) as { version: string }).version;
}
