// The benchmark suite. `npm run bench` (full, writes results/latest.json and RESULTS.md),
// `npm run bench:smoke` (seconds per scenario; checks each scenario ran and produced numbers,
// asserts no timing). Options: --only=1,5 (scenario numbers), --profile (profiling pass only),
// --merge (fold an --only / --profile run into results/latest.json and RESULTS.md).
import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import { createContext, FORM, issueKey, PI_BODY, startKeyleash, stripeKey } from './lib/context.mjs';
import { throughput } from './lib/load.mjs';
import { BENCH_DIR, killAll } from './lib/proc.mjs';
import { evaluateTargets, writeResultsMd } from './lib/report.mjs';
import { summarize } from './summarize-profile.mjs';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const profileOnly = args.includes('--profile');
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const SCENARIOS = ['1-proxy', '2-streaming', '3-issuance', '4-contention', '5-scale', '6-backends', '7-peer', '8-minting', '9-hot-key', '10-pg-redis-hot-key', '11-mcp', '12-dashboard-load'];

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function machine() {
  const sh = (c) => {
    try {
      return execSync(c, { encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  return {
    cpus: Number(sh('nproc')) || cpus().length,
    cpu_model: cpus()[0]?.model ?? '?',
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB (${Math.round(freemem() / 2 ** 30)} GiB free at start)`,
    free_h: sh('free -h'),
    os: sh('uname -sr'),
    node: process.version,
  };
}

async function profilePass(ctx) {
  const dir = join(BENCH_DIR, 'results', 'profiles');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const gw = await startKeyleash(ctx.upstream.proxyUrl, { path: join(ctx.dir, 'profile.sqlite') }, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  const keys = [];
  for (let i = 0; i < 50; i++) keys.push(await issueKey(gw.apiUrl, stripeKey()));
  const durationS = smoke ? 1 : 8;
  const r = await throughput(gw.proxyUrl, {
    path: '/stripe/v1/payment_intents',
    headers: FORM,
    body: PI_BODY,
    auth: keys.map((k) => `Bearer ${k.token}`),
    connections: 50,
    durationS,
    warmupS: 1,
  });
  await gw.stop();
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile was written');
  const s = summarize(join(dir, file));
  writeFileSync(join(dir, file.replace(/\.cpuprofile$/, '.folded')), s.folded);
  const { folded, ...rest } = s;
  return { ...rest, rps_under_profiler: r.rps, file: `results/profiles/${file}` };
}

const started = new Date();
const t0 = performance.now();
const run = {
  started: started.toISOString(),
  mode: smoke ? 'smoke' : profileOnly ? 'profile' : 'full',
  command: smoke ? 'npm run bench:smoke --prefix bench' : 'npm run bench --prefix bench',
  machine: machine(),
  scenarios: {},
};
console.log(`keyleash bench (${run.mode}) on ${run.machine.cpus}× ${run.machine.cpu_model}, Node ${run.machine.node}`);

const ctx = await createContext({ smoke });
let failed = [];
try {
  if (!profileOnly) {
    for (const name of SCENARIOS) {
      if (only && !only.some((o) => name.startsWith(`${o}-`) || name === o)) continue;
      const mod = await import(`./scenarios/${name}.mjs`);
      const s = performance.now();
      process.stdout.write(`\n== ${name}: ${mod.title}\n`);
      try {
        const r = await mod.run(ctx);
        r.seconds = Math.round((performance.now() - s) / 100) / 10;
        run.scenarios[name] = r;
        if (!r.ok) failed.push(`${name}: ran but its numbers are not valid (see JSON)`);
        console.log(JSON.stringify(r, (k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v)));
      } catch (e) {
        run.scenarios[name] = { error: String(e?.stack ?? e).slice(0, 2000) };
        failed.push(`${name}: ${e?.message ?? e}`);
        console.log(`FAILED: ${e?.stack ?? e}`);
      }
    }
  }
  if (profileOnly || (!smoke && !only)) {
    process.stdout.write('\n== profile: keyleash under the scenario-1 load with --cpu-prof\n');
    run.profile = await profilePass(ctx);
    console.log(JSON.stringify({ top: run.profile.top.slice(0, 10), byComponent: run.profile.byComponent }));
  }
} finally {
  await ctx.close();
}
run.duration_s = Math.round((performance.now() - t0) / 1000);
run.targets = evaluateTargets(run.scenarios);

mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
// --merge (with --only or --profile): fold these scenarios into the last full run's results.
const merge = args.includes('--merge') && !smoke && (only || profileOnly);
const latest = join(BENCH_DIR, 'results', 'latest.json');
if (merge && existsSync(latest)) {
  const prev = JSON.parse(readFileSync(latest, 'utf8'));
  prev.scenarios = { ...prev.scenarios, ...run.scenarios };
  if (run.profile) prev.profile = run.profile;
  prev.merged = [...(prev.merged ?? []), { started: run.started, scenarios: Object.keys(run.scenarios), profile: !!run.profile }];
  prev.targets = evaluateTargets(prev.scenarios);
  Object.assign(run, { ...prev, targets: prev.targets });
}
const out = join(BENCH_DIR, 'results', smoke ? 'smoke.json' : (only || profileOnly) && !merge ? 'partial.json' : 'latest.json');
writeFileSync(out, JSON.stringify(run, null, 2) + '\n');
if (!smoke && ((!only && !profileOnly) || merge)) writeResultsMd(join(BENCH_DIR, 'RESULTS.md'), run);
console.log(`\n${Object.keys(run.scenarios).length} scenarios in ${run.duration_s} s; results in ${out}`);
for (const tg of run.targets) console.log(`  ${tg.met === null ? 'n/a   ' : tg.met ? 'met   ' : 'MISSED'}  ${tg.target}: ${tg.value}`);
if (failed.length) {
  console.error(`\n${failed.length} scenario(s) did not produce valid numbers:\n  ${failed.join('\n  ')}`);
  process.exit(1);
}
process.exit(0);
