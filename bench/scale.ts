/**
 * `npm run bench:scale`: ingest, a full FETCH, a group-by and point lookups with 2, 4, 8 and
 * 16 worker processes on this one machine (R=2, BENCH_ROWS rows, default 200,000). For the
 * lookups it prints p50 and p99, the CPU of one lookup over every process (coordinator,
 * workers, Redis, this client; in brackets what the same processes spend idle over as long) and
 * how many workers a lookup and an `$in` of 10 ids reach,
 * by the workers' own counters of FETCHes received; and which workers a full read of a
 * 2-chunk table asks. Writes bench/scale-results.json. Every read is checked.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { QuerySpec } from '../common/query';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import type { TestCluster } from '../test/support/cluster';
import { percentiles } from './baselines';
import { ingest, query } from './client';
import { clusterPids, peakRssMiB, perUnit, redisPid, withCpu } from './cpu';
import { generate, rowId } from './data';
import { benchCluster, envInt, run } from './setup';

const TABLE = 'bench';
const GROUP: QuerySpec = { groupBy: ['city'], aggregate: [{ op: 'count' }, { op: 'avg', field: 'amount' }] };

/** FETCHes each worker has received, from the counters in its heartbeat (waits two beats first). */
async function fetchRequests(cluster: TestCluster): Promise<number> {
  await new Promise((r) => setTimeout(r, 1200));
  const r = await cluster.api<{ workers: { counters: { fetchRequests?: number } | null }[] }>('GET', '/status');
  return r.body.workers.reduce((n, w) => n + (w.counters?.fetchRequests ?? 0), 0);
}

/** Lookups by `_id`: latency, CPU over every process, and workers reached per lookup. */
async function lookups(
  cluster: TestCluster,
  redis: number | undefined,
  rows: number,
  n: number,
): Promise<Record<string, number>> {
  const requestsBefore = await fetchRequests(cluster);
  const pids = clusterPids(cluster, redis);
  const t0 = performance.now();
  const { value: times, cpu } = await withCpu(pids, async () => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = rowId(Math.floor(((i * 7919) % n) * (rows / n)));
      const r = await query(cluster.url, TABLE, { where: { _id: id } });
      if (r.count !== 1) throw new Error(`lookup of ${id} returned ${r.count} rows`);
      times.push(r.ms);
    }
    return times;
  });
  // What the cluster spends doing nothing for as long (heartbeats, blocking reads, sweeps):
  // with N workers on 2 cores that share grows with N whatever the lookups cost.
  const wallMs = performance.now() - t0;
  const idle = await withCpu(pids, () => new Promise((r) => setTimeout(r, wallMs)));
  const reached = (await fetchRequests(cluster)) - requestsBefore;
  const ten = Array.from({ length: 10 }, (_, i) => rowId(Math.floor((i * rows) / 10) + 3));
  const beforeIn = await fetchRequests(cluster);
  const r = await query(cluster.url, TABLE, { where: { _id: { $in: ten } } });
  if (r.count !== 10) throw new Error(`an $in of 10 ids returned ${r.count} rows`);
  const reachedIn = (await fetchRequests(cluster)) - beforeIn;
  const p = percentiles(times);
  return {
    lookupP50Ms: p.p50,
    lookupP99Ms: p.p99,
    lookupCpuMs: perUnit(cpu, n).all / 1000,
    lookupIdleCpuMs: perUnit(idle.cpu, n).all / 1000,
    lookupCoordCpuMs: (perUnit(cpu, n).coordinator ?? 0) / 1000,
    lookupWorkers: reached / n,
    inWorkers: reachedIn,
  };
}

/** Which workers a full read of a 2-chunk table asks (by the plan, `explain`). */
async function smallTableWorkers(cluster: TestCluster): Promise<number> {
  await cluster.api('PUT', '/tables/small', {});
  const body = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ _id: `s${i}`, n: i })).join('\n');
  const p = await cluster.api('POST', '/tables/small/records', body, 'application/x-ndjson');
  if (p.status !== 200) throw new Error(`posting the small table answered ${p.status}`);
  const [plan] = await cluster.query<{ explain: { tableChunks: number; workers: unknown[] } }>('small', {
    explain: true,
  });
  if (plan.explain.tableChunks !== 2)
    throw new Error(`the small table has ${plan.explain.tableChunks} chunks, expected 2`);
  return plan.explain.workers.length;
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 200_000, 1000);
  const lanes = envInt('BENCH_LANES', 2, 1);
  const counts = (process.env.BENCH_WORKERS ?? '2,4,8,16').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 2))
    throw new Error('BENCH_WORKERS must be a comma-separated list of whole numbers >= 2, e.g. 2,4,8,16');
  const postRows = Math.max(1000, Math.min(100_000, Math.ceil(rows / 8)));
  const data = generate(path.join(tempDir('scale'), 'rows.ndjson'), rows, postRows);
  const redis = await startRedis();
  const redisProc = await redisPid(redis);
  const out: Record<string, number>[] = [];
  for (const workers of counts) {
    console.error(`[scale] ${workers} workers: ingest ${rows} rows at R=2`);
    const cluster = await benchCluster(redis.url, workers, 2, TABLE);
    try {
      const ingestRate = await ingest(cluster.url, TABLE, data, lanes);
      const full = await query(cluster.url, TABLE, {}, 0);
      if (full.count !== rows)
        throw new Error(`${workers} workers: full FETCH returned ${full.count} rows, expected ${rows}`);
      const group = await query(cluster.url, TABLE, GROUP);
      const total = group.lines.reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0);
      if (total !== rows) throw new Error(`${workers} workers: group-by counted ${total} rows, expected ${rows}`);
      const ws = [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0);
      const look = await lookups(cluster, redisProc, rows, envInt('BENCH_LOOKUPS', 500, 10));
      const small = await smallTableWorkers(cluster);
      out.push({
        ...look,
        smallTableWorkers: small,
        workers,
        ingestRowsPerSec: ingestRate,
        fetchRowsPerSec: rows / (full.ms / 1000),
        groupByMs: group.ms,
        groupByRowsPerSec: rows / (group.ms / 1000),
        coordinatorRssMiB: peakRssMiB(cluster.coordinator.pid) ?? 0,
        workerRssMiB: Math.max(...ws),
        workersRssMiB: ws.reduce((a, b) => a + b, 0),
      });
    } finally {
      await cluster.stop();
    }
  }
  const head =
    'workers  ingest rows/s  full FETCH rows/s  group-by ms  group-by rows/s  lookup p50 ms  p99 ms  CPU ms/lookup (idle)  coord CPU ms  workers/lookup  workers/$in10  2-chunk read asks  coord RSS MiB  worker RSS MiB (max / all)';
  console.log(
    `\ndstore scale: ${rows} rows, R=2, ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  console.log(head);
  for (const r of out) {
    console.log(
      [
        String(r.workers).padStart(7),
        Math.round(r.ingestRowsPerSec).toLocaleString('en-US').padStart(13),
        Math.round(r.fetchRowsPerSec).toLocaleString('en-US').padStart(17),
        r.groupByMs.toFixed(0).padStart(11),
        Math.round(r.groupByRowsPerSec).toLocaleString('en-US').padStart(15),
        r.lookupP50Ms.toFixed(2).padStart(13),
        r.lookupP99Ms.toFixed(1).padStart(6),
        `${r.lookupCpuMs.toFixed(2)} (${r.lookupIdleCpuMs.toFixed(2)})`.padStart(20),
        r.lookupCoordCpuMs.toFixed(2).padStart(12),
        r.lookupWorkers.toFixed(2).padStart(14),
        String(r.inWorkers).padStart(13),
        String(r.smallTableWorkers).padStart(17),
        r.coordinatorRssMiB.toFixed(0).padStart(13),
        `${r.workerRssMiB.toFixed(0)} / ${r.workersRssMiB.toFixed(0)}`.padStart(26),
      ].join('  '),
    );
  }
  const file = path.join(projectRoot(), 'bench', 'scale-results.json');
  fs.writeFileSync(
    file,
    JSON.stringify(
      { at: new Date().toISOString(), rows, lanes, cores: os.cpus().length, loadavg: os.loadavg(), results: out },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
}

run(main);
