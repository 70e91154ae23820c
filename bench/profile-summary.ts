/**
 * `node dist/bench/profile-summary.js <file.cpuprofile|dir> [top]`: the functions with the
 * most self time in V8 CPU profiles (as written by `node --cpu-prof`, e.g. from
 * `BENCH_CPU_PROF=<dir> npm run bench`), one table per profile.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time per function (ms), summed over every node of the same function, largest first. */
export function selfTimes(p: Profile): { name: string; ms: number; share: number }[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i], (self.get(samples[i]) ?? 0) + (deltas[i] ?? 0));
  const total = [...self.values()].reduce((a, b) => a + b, 0) || 1;
  const byName = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}` : '';
    const name = `${f.functionName || '(anonymous)'} ${where}`.trim();
    byName.set(name, (byName.get(name) ?? 0) + us);
  }
  return [...byName.entries()]
    .map(([name, us]) => ({ name, ms: us / 1000, share: us / total }))
    .sort((a, b) => b.ms - a.ms);
}

/**
 * Where the self time of functions named `fn` comes from: the chain of `depth` callers
 * above each sample, summed, largest first.
 */
export function callers(p: Profile, fn: string, depth = 4): { chain: string; ms: number }[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  (p.samples ?? []).forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas?.[i] ?? 0)));
  const out = new Map<string, number>();
  for (const [id, us] of self) {
    if (byId.get(id)!.callFrame.functionName !== fn) continue;
    const chain: string[] = [];
    for (let at = parent.get(id); at !== undefined && chain.length < depth; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      chain.push(`${f.functionName || '(anon)'}@${path.basename(f.url)}:${f.lineNumber + 1}`);
    }
    const key = chain.join(' < ');
    out.set(key, (out.get(key) ?? 0) + us);
  }
  return [...out.entries()].map(([chain, us]) => ({ chain, ms: us / 1000 })).sort((a, b) => b.ms - a.ms);
}

function main(): void {
  const by = process.argv.indexOf('--callers');
  if (by > 0) {
    const [file, fn] = [process.argv[2], process.argv[by + 1]];
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
    for (const c of callers(p, fn, Number(process.argv[by + 2] ?? 6)).slice(0, 12))
      console.log(`${c.ms.toFixed(0).padStart(8)} ms  ${c.chain}`);
    return;
  }
  const [target, topArg] = process.argv.slice(2);
  if (!target) {
    console.error('usage: node dist/bench/profile-summary.js <file.cpuprofile|dir> [top=15]');
    process.exit(2);
  }
  const top = Number(topArg ?? 15);
  const files = fs.statSync(target).isDirectory()
    ? fs
        .readdirSync(target)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => path.join(target, f))
    : [target];
  for (const file of files) {
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
    const rows = selfTimes(p);
    const total = rows.reduce((a, r) => a + r.ms, 0);
    console.log(`\n${path.basename(file)}: ${(total / 1000).toFixed(1)} s sampled`);
    for (const r of rows.slice(0, top))
      console.log(`${r.ms.toFixed(0).padStart(8)} ms ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.name}`);
  }
}

if (require.main === module) main();
