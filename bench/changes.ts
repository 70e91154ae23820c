/**
 * `npm run bench:changes`: what a table's change stream costs. BENCH_ROWS rows (default
 * 200,000) are POSTed into a table without changes and into one with changes on (4 workers,
 * R = 2), each timed with the CPU of every process per row; then an UPDATE of every row of each.
 * Redis memory per event is used_memory's growth over the events the stream holds. A watcher
 * reads the whole stream back and counts it. Writes bench/changes-results.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeKeys } from '../common/keys';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { ingest } from './client';
import { clusterPids, perUnit, redisPid, withCpu, type CpuPerUnit } from './cpu';
import { generate } from './data';
import { benchCluster, envInt, run, settled } from './setup';

const WORKERS = 4;

function log(msg: string): void {
  console.error(`[changes ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

interface Phase {
  phase: string;
  rowsPerS: number;
  cpuPerRowUs: CpuPerUnit;
}

async function usedMemory(cluster: { redis: { info(s: string): Promise<string> } }): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await cluster.redis.info('memory'))?.[1] ?? NaN);
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 200_000, 1000);
  const dir = tempDir('bench-changes');
  const postRows = Math.max(1000, Math.min(50_000, Math.ceil(rows / 8)));
  log(`generating ${rows} rows`);
  const data = generate(path.join(dir, 'rows.ndjson'), rows, postRows);
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, WORKERS, 2, 'plain');
  const out: Phase[] = [];
  try {
    const r = await cluster.api('PUT', '/tables/watched', { changes: { maxEntries: rows * 4 } });
    if (r.status !== 201) throw new Error(`creating table watched answered ${r.status}`);
    const pids = clusterPids(cluster, await redisPid(redis));
    const phase = async (name: string, fn: () => Promise<unknown>) => {
      log(name);
      const t0 = performance.now();
      const c = await withCpu(pids, fn);
      await settled(cluster, 600_000);
      out.push({ phase: name, rowsPerS: rows / ((performance.now() - t0) / 1000), cpuPerRowUs: perUnit(c.cpu, rows) });
    };
    await phase('POST, changes off', () => ingest(cluster.url, 'plain', data, 2));
    const memBefore = await usedMemory(cluster);
    await phase('POST, changes on', () => ingest(cluster.url, 'watched', data, 2));
    const memAfter = await usedMemory(cluster);
    const update = (t: string) => async () => {
      const u = await cluster.api<{ updated: number }>('PATCH', `/tables/${t}/records`, {
        where: {},
        set: { flag: true },
      });
      if (u.status !== 200 || u.body.updated !== rows)
        throw new Error(`UPDATE of ${t}: ${u.status} ${JSON.stringify(u.body)}`);
    };
    await phase('UPDATE every row, changes off', update('plain'));
    await phase('UPDATE every row, changes on', update('watched'));
    const keys = makeKeys(cluster.opts.prefix);
    const events = await cluster.redis.xlen(keys.changes('watched'));
    if (events !== 2 * rows) throw new Error(`the change stream holds ${events} events, want ${2 * rows}`);
    const perEvent = (memAfter - memBefore) / rows;
    console.log(`\ndstore change streams: ${rows} rows, ${WORKERS} workers, R=2, ${os.cpus().length} cores\n`);
    console.log('phase                              rows/s  CPU µs/row: coord  workers  redis  client   all');
    const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
    for (const p of out) {
      const c = p.cpuPerRowUs;
      console.log(
        [
          p.phase.padEnd(31),
          Math.round(p.rowsPerS).toString().padStart(8),
          f(c.coordinator).padStart(17),
          f(c.workersSum).padStart(7),
          f(c.redis).padStart(5),
          f(c.client).padStart(6),
          f(c.all).padStart(5),
        ].join('  '),
      );
    }
    console.log(
      `\nRedis memory per insert event: ${perEvent.toFixed(0)} B (rows of ${(data.bytes / rows).toFixed(0)} B as NDJSON); ${events} events kept`,
    );
    const file = path.join(projectRoot(), 'bench', 'changes-results.json');
    fs.writeFileSync(
      file,
      JSON.stringify({ at: new Date().toISOString(), rows, phases: out, bytesPerEvent: perEvent }, null, 2) + '\n',
    );
    console.log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    await cluster.stop();
    await redis.stop();
  }
}

run(main);
