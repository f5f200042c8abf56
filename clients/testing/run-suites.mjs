#!/usr/bin/env node
// Runs the Python (pytest) and Go (go test) client suites against a real gateway (each suite
// starts clients/testing/gateway.mjs itself; the keyleash package must be built).
//
// On a developer machine without python3+flask+requests+pytest or without go, a suite is
// SKIPPED with a loud warning. Under CI=true (or KEYLEASH_REQUIRE_CLIENT_SUITES=1) a missing
// tool is a failure, and so is a pytest run that collected no tests (exit code 5).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const strict = ['1', 'true'].includes(String(process.env.CI).toLowerCase()) || process.env.KEYLEASH_REQUIRE_CLIENT_SUITES === '1';
const failures = [];

function skip(suite, why) {
  const line = '!'.repeat(78);
  if (strict) {
    failures.push(`${suite}: ${why}`);
    process.stderr.write(`\n${line}\n${suite}: ${why} — failing because CI=true\n${line}\n`);
  } else {
    process.stderr.write(`\n${line}\nSKIPPED ${suite} suite: ${why}\n(install it to run it; under CI=true this fails)\n${line}\n`);
  }
}

function run(cmd, args, cwd, env = {}) {
  process.stdout.write(`\n$ (cd ${cwd.replace(root + '/', '') || '.'} && ${cmd} ${args.join(' ')})\n`);
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.error ? 127 : (r.status ?? 1);
}

// ---- Python -----------------------------------------------------------------------------------
// Debian's python3-flask etc. install into /usr/bin/python3's site-packages, which may not be
// the python3 first on PATH (e.g. pyenv): take the first interpreter that can import them.
const pythons = [process.env.KEYLEASH_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean);
const need = strict ? 'import flask, requests, pytest, celery, stripe, twilio' : 'import flask, requests, pytest';
const python = pythons.find((p) => spawnSync(p, ['-c', need], { stdio: 'ignore' }).status === 0);
if (!python) {
  skip('Python', `no python3 that can \`${need}\` (tried ${pythons.join(', ')}; apt-get install python3-flask python3-requests python3-pytest python3-celery python3-stripe python3-twilio python3-venv)`);
} else {
  const code = run(python, ['-m', 'pytest', 'tests', '-q', '-rs', '-p', 'no:cacheprovider'], join(root, 'clients', 'python'), { PYTHONDONTWRITEBYTECODE: '1' });
  if (code === 5) failures.push('Python: pytest collected no tests (exit 5)');
  else if (code !== 0) failures.push(`Python: pytest exited ${code}`);
}

// ---- Go ---------------------------------------------------------------------------------------
const go = process.env.KEYLEASH_GO ?? 'go';
if (spawnSync(go, ['version'], { stdio: 'ignore' }).status !== 0) {
  skip('Go', `\`${go}\` not found (apt-get install golang-go)`);
} else {
  const code = run(go, ['test', '-count=1', './...'], join(root, 'clients', 'go'));
  if (code !== 0) failures.push(`Go: go test exited ${code}`);
}

if (failures.length) {
  process.stderr.write(`\nclient suites failed:\n  ${failures.join('\n  ')}\n`);
  process.exit(1);
}
