/**
 * Point-lookup probe: loads BENCH_ROWS rows into a fresh R=2 cluster and times
 * lookups by `_id`, printing p50/p90/p99/max and the slowest times. For iterating on
 * lookup latency without the whole bench (`node dist/bench/lookup-probe.js`).
 */
import * as path from 'node:path';
import { tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { percentiles } from './baselines';
import { ingest, query } from './client';
import { clusterPids, peakRssMiB, redisPid, withCpu, type CpuUse } from './cpu';
import { generate, rowId } from './data';
import { benchCluster, envInt, run } from './setup';

run(async () => {
  const rows = envInt('BENCH_ROWS', 100_000, 1000);
  const n = envInt('PROBE_LOOKUPS', 1000, 1);
  const data = generate(path.join(tempDir('probe'), 'rows.ndjson'), rows, Math.min(100_000, rows));
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, envInt('PROBE_WORKERS', 4, 1), envInt('PROBE_R', 2, 1), 'bench');
  const pids = clusterPids(cluster, await redisPid(redis));
  const show = (cpu: CpuUse, units: number, per: number) => {
    const ms = (ns: number | undefined) => (ns === undefined ? '-' : (((ns / 1e6) * per) / units).toFixed(2));
    const each: [string, number | undefined][] = [
      ['coordinator', cpu.coordinator],
      ...cpu.workers.map((w, i): [string, number | undefined] => [`w${i + 1}`, w]),
      ['redis', cpu.redis],
      ['client', cpu.client],
    ];
    return each.map(([name, ns]) => `${name} ${ms(ns)}`).join(', ');
  };
  const loaded = await withCpu(pids, () => ingest(cluster.url, 'bench', data, 2));
  console.log(`ingest: ${Math.round(loaded.value)} rows/s`);
  console.log(`CPU ms per 1000 rows ingested: ${show(loaded.cpu, rows, 1000)}`);
  console.log(`coordinator peak RSS after ingest: ${peakRssMiB(cluster.coordinator.pid)} MiB`);
  for (let i = 0; i < envInt('PROBE_FULL', 0, 0); i++) {
    const r = await query(cluster.url, 'bench', {}, 0);
    if (r.count !== rows) throw new Error(`full read returned ${r.count} rows`);
    console.log(
      `full read: ${Math.round(rows / (r.ms / 1000))} rows/s; coordinator peak RSS ${peakRssMiB(cluster.coordinator.pid)} MiB`,
    );
  }
  const { value: times, cpu } = await withCpu(pids, async () => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = rowId(Math.floor(((i * 7919) % n) * (rows / n)));
      const r = await query(cluster.url, 'bench', { where: { _id: id } });
      if (r.count !== 1) throw new Error(`lookup of ${id} returned ${r.count} rows`);
      times.push(r.ms);
    }
    return times;
  });
  console.log(`CPU ms per lookup: ${show(cpu, n, 1)}`);
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
