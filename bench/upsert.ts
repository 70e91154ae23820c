/**
 * `npm run bench:upsert`: what writing rows whose `_id` is stored costs (issue 18, upsert).
 * Loads BENCH_ROWS rows (default 100,000) into 4 workers at R = 2, then POSTs the same rows
 * again with `?onConflict=replace` (every row replaced) and a body of two fields per row with
 * `?onConflict=merge` (every row merged), each timed with the CPU of every process per row.
 * The baseline is one SQLite file (WAL, synchronous=NORMAL) in this process: INSERT, then
 * `INSERT … ON CONFLICT (_id) DO UPDATE` with the whole row and with json_patch. A read of
 * every row after the merge checks the result. Writes bench/upsert-results.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { removeSqlite, SqliteBaseline } from './baselines';
import { ingest, query } from './client';
import { clusterPids, perUnit, redisPid, withCpu, type CpuPerUnit } from './cpu';
import { generate, type DataSet } from './data';
import { benchCluster, envInt, settled } from './setup';

const TABLE = 'bench';
const WORKERS = 4;
const MERGED = ['qty', 'amount'] as const;

function log(msg: string): void {
  console.error(`[upsert ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

interface Phase {
  phase: string;
  dstoreRowsPerS: number;
  baselineRowsPerS: number;
  cpuPerRowUs: CpuPerUnit;
  baselineCpuPerRowUs: number;
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 100_000, 1000);
  const dir = tempDir('bench-upsert');
  const postRows = Math.max(1000, Math.min(50_000, Math.ceil(rows / 8)));
  log(`generating ${rows} rows`);
  const full = generate(path.join(dir, 'rows.ndjson'), rows, postRows);
  // The same rows' qty and amount from another seed: every merged row changes.
  const patch = generate(path.join(dir, 'patch.ndjson'), rows, postRows, 7, MERGED);
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, WORKERS, 2, TABLE);
  const baseFile = path.join(dir, 'baseline.sqlite');
  const base = new SqliteBaseline(baseFile, 'normal');
  const out: Phase[] = [];
  try {
    const pids = clusterPids(cluster, await redisPid(redis));
    const phases: [string, DataSet, 'replace' | 'merge' | undefined][] = [
      ['insert', full, undefined],
      ['replace (every row stored)', full, 'replace'],
      ['merge 2 fields (every row stored)', patch, 'merge'],
    ];
    for (const [name, data, mode] of phases) {
      log(`${name}: dstore`);
      const d = await withCpu(pids, () => ingest(cluster.url, TABLE, data, 2, mode));
      await settled(cluster);
      log(`${name}: one SQLite file`);
      const b = await withCpu(undefined, () => (mode ? base.upsert(data, mode) : base.insert(data)));
      out.push({
        phase: name,
        dstoreRowsPerS: d.value,
        baselineRowsPerS: b.value,
        cpuPerRowUs: perUnit(d.cpu, data.rows),
        baselineCpuPerRowUs: perUnit(b.cpu, data.rows).client,
      });
    }
    // Every row: the fields of the first load, qty and amount of the patch.
    const got = await query(cluster.url, TABLE, {}, rows);
    if (got.count !== rows) throw new Error(`read ${got.count} rows after the merge, want ${rows}`);
    const want = new Map<string, Record<string, unknown>>();
    for (const line of fs.readFileSync(patch.file, 'utf8').split('\n'))
      if (line) {
        const r = JSON.parse(line) as Record<string, unknown>;
        want.set(r._id as string, r);
      }
    for (const line of got.lines) {
      const r = JSON.parse(line) as Record<string, unknown>;
      const w = want.get(r._id as string);
      if (!w || MERGED.some((f) => r[f] !== w[f]) || typeof r.city !== 'string')
        throw new Error(`row ${String(r._id)} is not the merged row: ${line}`);
    }
    console.log(
      `\ndstore upsert: ${rows} rows, ${WORKERS} workers, R=2, ${os.cpus().length} cores; baseline: one SQLite file (WAL, synchronous=NORMAL)\n`,
    );
    console.log(
      'phase                               dstore rows/s  SQLite rows/s  SQLite / dstore  CPU µs/row: coord  workers  redis  client  all  SQLite',
    );
    for (const p of out) {
      const c = p.cpuPerRowUs;
      const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
      console.log(
        [
          p.phase.padEnd(34),
          Math.round(p.dstoreRowsPerS).toString().padStart(13),
          Math.round(p.baselineRowsPerS).toString().padStart(13),
          `${(p.baselineRowsPerS / p.dstoreRowsPerS).toFixed(1)}x`.padStart(15),
          f(c.coordinator).padStart(17),
          f(c.workersSum).padStart(7),
          f(c.redis).padStart(5),
          f(c.client).padStart(6),
          f(c.all).padStart(4),
          f(p.baselineCpuPerRowUs).padStart(6),
        ].join('  '),
      );
    }
    const info = await cluster.redis.info('memory');
    const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
    console.log(
      `\nRedis used_memory after the merge: ${(used / 1e6).toFixed(1)} MB (${(used / rows).toFixed(0)} B a row)`,
    );
    const file = path.join(projectRoot(), 'bench', 'upsert-results.json');
    fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rows, phases: out }, null, 2) + '\n');
    console.log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    base.close();
    removeSqlite(baseFile);
    await cluster.stop();
    await redis.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
