/**
 * Point-lookup probe: loads BENCH_ROWS rows into a fresh R=2 cluster and times
 * lookups by `_id`, printing p50/p90/p99/max and the slowest times. For iterating on
 * lookup latency without the whole bench (`node dist/bench/lookup-probe.js`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { percentiles } from './baselines';
import { ingest, peakRssMiB, query } from './client';
import { generate, rowId } from './data';
import { benchCluster, envInt, run } from './setup';

run(async () => {
  const rows = envInt('BENCH_ROWS', 100_000, 1000);
  const n = envInt('PROBE_LOOKUPS', 1000, 1);
  const data = generate(path.join(tempDir('probe'), 'rows.ndjson'), rows, Math.min(100_000, rows));
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, 4, envInt('PROBE_R', 2, 1), 'bench');
  const info = await cluster.redis.info('server');
  const pids: [string, number][] = [
    ['coordinator', cluster.coordinator.pid!],
    ...[...cluster.workers.values()].map((w) => [w.id, w.child.pid!] as [string, number]),
    ['redis', Number(/process_id:(\d+)/.exec(info)![1])],
    ['client', process.pid],
  ];
  const cpu = () =>
    pids.map(([, pid]) =>
      fs
        .readFileSync(`/proc/${pid}/stat`, 'utf8')
        .split(') ')[1]
        .split(' ')
        .slice(11, 13)
        .reduce((a, b) => a + Number(b), 0),
    );
  const beforeIngest = cpu();
  console.log(`ingest: ${Math.round(await ingest(cluster.url, 'bench', data, 2))} rows/s`);
  const afterIngest = cpu();
  console.log(
    'CPU ms per 1000 rows ingested: ' +
      pids
        .map(([name], i) => `${name} ${(((afterIngest[i] - beforeIngest[i]) * 10 * 1000) / rows).toFixed(1)}`)
        .join(', '),
  );
  console.log(`coordinator peak RSS after ingest: ${peakRssMiB(cluster.coordinator.pid)} MiB`);
  for (let i = 0; i < envInt('PROBE_FULL', 0, 0); i++) {
    const r = await query(cluster.url, 'bench', {}, 0);
    if (r.count !== rows) throw new Error(`full read returned ${r.count} rows`);
    console.log(
      `full read: ${Math.round(rows / (r.ms / 1000))} rows/s; coordinator peak RSS ${peakRssMiB(cluster.coordinator.pid)} MiB`,
    );
  }
  const before = cpu();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = rowId(Math.floor(((i * 7919) % n) * (rows / n)));
    const r = await query(cluster.url, 'bench', { where: { _id: id } });
    if (r.count !== 1) throw new Error(`lookup of ${id} returned ${r.count} rows`);
    times.push(r.ms);
  }
  const after = cpu();
  console.log(
    'CPU ms per lookup: ' +
      pids.map(([name], i) => `${name} ${(((after[i] - before[i]) * 10) / n).toFixed(2)}`).join(', '),
  );
  const p = percentiles(times);
  const sorted = [...times].sort((a, b) => b - a);
  console.log(
    `lookups ${n}: p50 ${p.p50.toFixed(2)} p99 ${p.p99.toFixed(2)} max ${sorted[0].toFixed(1)}; slowest ${sorted
      .slice(0, 15)
      .map((t) => t.toFixed(0))
      .join(' ')}`,
  );
  await cluster.stop();
});
