import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { createStripeSandbox, type StripeSandbox } from '../src/sandbox/stripe.js';
import { ADMIN_TOKEN, freePort, STRIPE_TEST_SECRET } from './harness.js';

// The shipped image, without Docker: deploy/Dockerfile's runtime stage is replayed on a temporary
// root — the gateway's `npm pack` where the Dockerfile puts it, only its production dependencies
// beside it, the declared volume — and its ENTRYPOINT + CMD are started from its WORKDIR with its
// ENV, as an unprivileged user that cannot write to the image's files (nobody when the tests run
// as root, as in CI; else the current, already unprivileged, user with the files made read-only).

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REPO = resolve(PKG, '..', '..');
const DOCKERFILE = join(REPO, 'deploy', 'Dockerfile');

interface RuntimeStage {
  env: Record<string, string>;
  workdir: string;
  copies: Array<{ from: string; to: string }>;
  volumes: string[];
  user: string;
  healthcheck: string[];
  entrypoint: string[];
  cmd: string[];
}

/** The last stage of the Dockerfile, instruction by instruction (one per line, exec form). */
function parseRuntimeStage(text: string): RuntimeStage {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines.map((l, i) => (/^FROM /i.test(l) ? i : -1)).filter((i) => i >= 0).pop()!;
  const s: RuntimeStage = { env: {}, workdir: '/', copies: [], volumes: [], user: 'root', healthcheck: [], entrypoint: [], cmd: [] };
  for (const line of lines.slice(last + 1)) {
    const [op, ...rest] = line.split(/\s+/);
    const arg = line.slice(op!.length).trim();
    switch (op!.toUpperCase()) {
      case 'ENV': {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(arg);
        if (!m) throw new Error(`ENV must be NAME=value: ${line}`);
        s.env[m[1]!] = m[2]!;
        break;
      }
      case 'WORKDIR':
        s.workdir = arg;
        break;
      case 'COPY': {
        const m = /^--from=\S+\s+(\S+)\s+(\S+)$/.exec(arg);
        if (!m) throw new Error(`only COPY --from=build is replayed: ${line}`);
        s.copies.push({ from: m[1]!, to: m[2]! });
        break;
      }
      case 'VOLUME':
        s.volumes.push(...(JSON.parse(arg) as string[]));
        break;
      case 'USER':
        s.user = arg;
        break;
      case 'HEALTHCHECK':
        s.healthcheck = JSON.parse(arg.slice(arg.indexOf('CMD ') + 4)) as string[];
        break;
      case 'ENTRYPOINT':
        s.entrypoint = JSON.parse(arg) as string[];
        break;
      case 'CMD':
        s.cmd = JSON.parse(arg) as string[];
        break;
      case 'RUN':
      case 'EXPOSE':
        void rest;
        break;
      default:
        throw new Error(`the image test does not know ${op}: ${line}`);
    }
  }
  return s;
}

const asRoot = process.getuid?.() === 0;
const NOBODY = 65534;

/** A command line run as the image's unprivileged user. */
function asUser(argv: string[]): [string, string[]] {
  if (!asRoot) return [argv[0]!, argv.slice(1)];
  return ['setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', ...argv]];
}

let root: string;
let stage: RuntimeStage;
let stripe: StripeSandbox;

/** An absolute path inside the image, on the temporary root. */
const inImage = (p: string) => join(root, p);

beforeAll(async () => {
  stage = parseRuntimeStage(readFileSync(DOCKERFILE, 'utf8'));
  root = mkdtempSync(join(tmpdir(), 'keyleash-image-'));
  chmodSync(root, 0o755);
  const app = inImage(stage.workdir);
  mkdirSync(app, { recursive: true });
  for (const { from, to } of stage.copies) {
    const dest = resolve(app, to);
    if (from === '/out/keyleash') {
      // `npm pack` of the built package: what its `files` ship, nothing else.
      const packDir = join(root, '.pack');
      mkdirSync(packDir);
      const out = execFileSync('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: PKG, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const file = (JSON.parse(out) as Array<{ filename: string }>)[0]!.filename;
      mkdirSync(dest, { recursive: true });
      execFileSync('tar', ['-xzf', join(packDir, file.replace(/^.*\//, '')), '-C', dest, '--strip-components=1']);
      rmSync(packDir, { recursive: true });
    } else if (from === '/src/node_modules') {
      // `npm prune --omit=dev`: the production dependency tree only.
      const list = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable', '-w', 'packages/keyleash'], { cwd: REPO, encoding: 'utf8' });
      const modules = join(REPO, 'node_modules');
      const paths = [...new Set(list.split('\n').filter((p) => p.startsWith(modules + '/')))].sort();
      let copied: string | null = null;
      for (const p of paths) {
        if (copied && p.startsWith(copied + '/')) continue;
        cpSync(p, join(dest, relative(modules, p)), { recursive: true });
        copied = p;
      }
    } else {
      throw new Error(`the image test does not know where ${from} comes from`);
    }
  }
  for (const v of stage.volumes) {
    mkdirSync(inImage(v), { recursive: true });
    if (asRoot) chownSync(inImage(v), NOBODY, NOBODY);
  }
  // The image's own files are not the user's to write.
  if (!asRoot) chmodSync(app, 0o555);
  stripe = createStripeSandbox({ secrets: [STRIPE_TEST_SECRET] });
  await stripe.listen();
}, 120_000);

afterAll(async () => {
  stripe?.server.closeAllConnections();
  await stripe?.close();
  if (root) {
    if (existsSync(inImage(stage.workdir))) chmodSync(inImage(stage.workdir), 0o755);
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);

/** The container's environment: the image's ENV (paths moved onto the temporary root) plus `extra`. */
function containerEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: '/nonexistent' };
  for (const [k, v] of Object.entries(stage.env)) env[k] = stage.volumes.some((vol) => v.startsWith(vol + '/')) ? inImage(v) : v;
  return { ...env, ...extra };
}

function start(env: NodeJS.ProcessEnv): { child: ChildProcess; stderr: () => string } {
  const argv = [...stage.entrypoint, ...stage.cmd].map((a) => (a === 'node' ? process.execPath : a));
  const [cmd, args] = asUser(argv);
  const child = spawn(cmd, args, { cwd: inImage(stage.workdir), env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c));
  return { child, stderr: () => err };
}

describe('the deploy image', { timeout: 60_000 }, () => {
  it('holds the package as published and only production dependencies', () => {
    const pkg = inImage(join(stage.workdir, 'packages/keyleash'));
    for (const f of ['package.json', 'bin/keyleash.js', 'dist/cli/main.js', 'web/index.html', 'web/app.js']) {
      expect(existsSync(join(pkg, f)), f).toBe(true);
    }
    expect(existsSync(join(pkg, 'src')) || existsSync(join(pkg, 'test'))).toBe(false);
    const modules = inImage(join(stage.workdir, 'node_modules'));
    expect(existsSync(join(modules, 'better-sqlite3'))).toBe(true);
    for (const dev of ['vitest', 'typescript', 'stripe']) expect(existsSync(join(modules, dev)), dev).toBe(false);
    expect(stage.user).not.toBe('root');
    expect(stage.volumes).toContain(dirname(stage.env.KEYLEASH_DATA!));
  });

  it('serves from its volume as an unprivileged user: probes, dashboard, a key and a proxied call', async () => {
    const [apiPort, proxyPort] = [await freePort(), await freePort()];
    const { child, stderr } = start(
      containerEnv({
        KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN,
        KEYLEASH_STRIPE_TEST_SECRET: STRIPE_TEST_SECRET,
        KEYLEASH_STRIPE_BASE_URL: stripe.url,
        // The image listens on 0.0.0.0:8080/8081; the test keeps to loopback and free ports.
        KEYLEASH_API_LISTEN: `127.0.0.1:${apiPort}`,
        KEYLEASH_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
        KEYLEASH_DRAIN_SECONDS: '0',
      }),
    );
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const api = `http://127.0.0.1:${apiPort}`;
      const proxy = `http://127.0.0.1:${proxyPort}`;
      let ready = false;
      for (let i = 0; i < 200 && !ready && child.exitCode === null; i++) {
        ready = await fetch(`${proxy}/readyz`).then((r) => r.ok, () => false);
        if (!ready) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ready, stderr()).toBe(true);
      expect((await fetch(`${api}/readyz`)).status).toBe(200);
      const dash = await fetch(`${api}/dashboard`);
      expect(dash.status).toBe(200);
      expect(await dash.text()).toContain('<html');

      const issued = await fetch(`${api}/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ label: 'image', vendor: 'stripe', allowed_endpoints: ['/v1/customers'], daily_usd_cap: 1, expires_in: '5m' }),
      });
      expect(issued.status).toBe(201);
      const { token } = (await issued.json()) as { token: string };
      const call = await fetch(`${proxy}/stripe/v1/customers`, { headers: { authorization: `Bearer ${token}` } });
      expect(call.status).toBe(200);

      // The store is on the volume, owned by the unprivileged user.
      const db = statSync(stage.env.KEYLEASH_DATA!.startsWith('/') ? inImage(stage.env.KEYLEASH_DATA!) : '');
      expect(db.isFile()).toBe(true);
      if (asRoot) expect(db.uid).toBe(NOBODY);

      // The image's HEALTHCHECK, pointed at this run's proxy port.
      const hc = stage.healthcheck.map((a) => (a === 'node' ? process.execPath : a.replace('127.0.0.1:8081', `127.0.0.1:${proxyPort}`)));
      const [hcCmd, hcArgs] = asUser(hc);
      expect(spawnSync(hcCmd, hcArgs, { timeout: 10_000 }).status).toBe(0);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });

  it('names the setting, without a stack trace, when the store path is not writable', async () => {
    const { child, stderr } = start(
      containerEnv({
        KEYLEASH_ADMIN_TOKEN: ADMIN_TOKEN,
        KEYLEASH_STRIPE_TEST_SECRET: STRIPE_TEST_SECRET,
        // Inside the image's own (read-only to the user) files, as the old default path was.
        KEYLEASH_DATA: join(inImage(stage.workdir), '.keyleash', 'keyleash.sqlite'),
        KEYLEASH_API_LISTEN: '127.0.0.1:0',
        KEYLEASH_PROXY_LISTEN: '127.0.0.1:0',
      }),
    );
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(2);
    expect(stderr()).toMatch(/cannot open the store at .*keyleash\.sqlite/);
    expect(stderr()).toContain('KEYLEASH_DATA');
    expect(stderr()).not.toMatch(/^\s+at /m);
  });
});

describe('the Compose and Kubernetes files', () => {
  type Doc = Record<string, any>;
  const k8s = parseAllDocuments(readFileSync(join(REPO, 'deploy', 'kubernetes.yaml'), 'utf8')).map((d) => d.toJS() as Doc);
  const compose = parseYaml(readFileSync(join(REPO, 'deploy', 'docker-compose.yml'), 'utf8')) as Doc;
  const deployment = k8s.find((d) => d.kind === 'Deployment')!;
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries((container.env as Doc[]).map((e) => [e.name, e]));

  it('Kubernetes: probes, a grace period longer than preStop + drain + deadline, a locked-down container', () => {
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) expect(container[probe], probe).toBeDefined();
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    const preStopMs = Number(/setTimeout\(\(\) => \{\}, ([0-9]+)\)/.exec(container.lifecycle.preStop.exec.command.join(' '))![1]);
    const drain = Number(env.KEYLEASH_DRAIN_SECONDS.value);
    const deadline = Number(env.KEYLEASH_SHUTDOWN_DEADLINE_SECONDS.value);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStopMs / 1000 + drain + deadline + 5);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(k8s.find((d) => d.kind === 'PodDisruptionBudget')).toBeDefined();
  });

  it('Kubernetes: every secret comes from a Secret, and the admin port is not in the proxy Service', () => {
    for (const e of container.env as Doc[]) {
      if (/TOKEN|SECRET|_KEY|URL/.test(e.name.replace(/^KEYLEASH_/, ''))) expect(e.valueFrom?.secretKeyRef, e.name).toBeDefined();
    }
    const proxySvc = k8s.find((d) => d.kind === 'Service' && d.metadata.name === 'keyleash-proxy')!;
    expect((proxySvc.spec.ports as Doc[]).map((p) => p.targetPort)).toEqual(['proxy']);
    const policy = k8s.find((d) => d.kind === 'NetworkPolicy')!;
    const apiRule = (policy.spec.ingress as Doc[]).find((r) => (r.ports as Doc[]).some((p) => p.port === 8080))!;
    expect(apiRule.from).toBeDefined();
  });

  it('Kubernetes: its settings load as a config', () => {
    const values = Object.fromEntries((container.env as Doc[]).map((e) => [e.name, e.value ?? 'x'.repeat(24)]));
    values.KEYLEASH_STRIPE_TEST_SECRET = 'sk_test_placeholder';
    values.KEYLEASH_DATABASE_URL = 'postgres://u@db:5432/k';
    values.KEYLEASH_REDIS_URL = 'redis://r:6379';
    const config = loadConfig(undefined, values);
    expect(config.shutdown).toEqual({ drain_seconds: 5, deadline_seconds: 25 });
    expect(config.listen.proxy.port).toBe(8081);
  });

  it('Compose: the control API is published on loopback only; the gateway is read-only with a grace period', () => {
    const ports = compose.services.lb.ports as string[];
    expect(ports.filter((p) => p.endsWith(':8080'))).toEqual(['127.0.0.1:8080:8080']);
    expect(compose.services.keyleash).toMatchObject({ read_only: true, cap_drop: ['ALL'] });
    expect(compose.services.keyleash.ports).toBeUndefined();
    expect(parseInt(compose.services.keyleash.stop_grace_period, 10)).toBeGreaterThan(30);
  });
});
