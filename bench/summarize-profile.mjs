// Summarizes a V8 .cpuprofile (node --cpu-prof): self time by function and by component, and a
// folded-stacks file for flame graphs (flamegraph.pl, speedscope, inferno).
//   node summarize-profile.mjs results/profiles/x.cpuprofile [--top=25]
import { readFileSync, writeFileSync } from 'node:fs';

const COMPONENTS = [
  [/better-sqlite3|\(program\).*sqlite/, 'SQLite (better-sqlite3)'],
  [/node_modules\/undici\//, 'undici (upstream client)'],
  [/node_modules\/pino|sonic-boom/, 'pino (logging)'],
  [/node_modules\/fastify|node_modules\/avvio|node_modules\/find-my-way|node_modules\/light-my-request/, 'fastify (control API)'],
  [/node_modules\/zod/, 'zod'],
  [/node_modules\//, 'other dependencies'],
  [/packages\/keyleash\/dist\/proxy\//, 'keyleash proxy/'],
  [/packages\/keyleash\/dist\/store\//, 'keyleash store/'],
  [/packages\/keyleash\/dist\/(policy|vendors|keys)\//, 'keyleash policy/vendors/keys'],
  [/packages\/keyleash\/dist\//, 'keyleash other'],
  [/^node:internal\/(http|_http|streams|stream)|^node:(_http|http|stream)/, 'node http + streams'],
  [/^node:internal\/(crypto)|^node:crypto/, 'node crypto'],
  [/^node:/, 'node other'],
];

function component(url, fn) {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'native / VM (program)';
  if (!url) return /^(writev|writeBuffer|writeUtf8String|writeLatin1String)$/.test(fn) ? 'native socket writes' : 'native (other)';
  for (const [re, name] of COMPONENTS) if (re.test(url)) return name;
  return 'other';
}

export function summarize(path, topN = 25) {
  const prof = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node from samples and their time deltas (µs).
  const self = new Map();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const idle = [...self].filter(([id]) => byId.get(id).callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;
  const fns = new Map();
  const comps = new Map();
  const folded = new Map();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const fn = functionName || '(anonymous)';
    if (fn === '(idle)') continue;
    const where = url ? `${url.replace(/^file:\/\/.*?\/(node_modules|packages)\//, '$1/')}:${lineNumber + 1}` : '';
    const k = `${fn}\t${where}`;
    fns.set(k, (fns.get(k) ?? 0) + us);
    const c = component(url, fn);
    comps.set(c, (comps.get(c) ?? 0) + us);
    const stack = [];
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur).callFrame;
      if (f.functionName === '(root)') break;
      stack.unshift((f.functionName || '(anonymous)').replace(/;/g, ':'));
    }
    const s = stack.join(';');
    folded.set(s, (folded.get(s) ?? 0) + us);
  }
  const pct = (us) => (100 * us) / busy;
  return {
    samples: prof.samples.length,
    duration_s: Math.round((prof.endTime - prof.startTime) / 1e4) / 100,
    busy_pct_of_wall: Math.round((100 * busy) / total),
    top: [...fns].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([k, us]) => {
      const [fn, where] = k.split('\t');
      return { fn, where, pct: Math.round(pct(us) * 10) / 10 };
    }),
    byComponent: [...comps].sort((a, b) => b[1] - a[1]).map(([component, us]) => ({ component, pct: Math.round(pct(us) * 10) / 10 })),
    folded: [...folded].map(([s, us]) => `${s} ${Math.round(us)}`).join('\n'),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  const top = Number((process.argv.find((a) => a.startsWith('--top=')) ?? '--top=25').slice(6));
  const s = summarize(file, top);
  writeFileSync(file.replace(/\.cpuprofile$/, '.folded'), s.folded);
  console.log(`${s.samples} samples over ${s.duration_s} s; busy ${s.busy_pct_of_wall} % of wall time. Self time, % of busy:`);
  for (const r of s.top) console.log(`${r.pct.toFixed(1).padStart(5)}  ${r.fn}  ${r.where}`);
  console.log('\nBy component:');
  for (const r of s.byComponent) console.log(`${r.pct.toFixed(1).padStart(5)}  ${r.component}`);
}
