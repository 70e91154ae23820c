/**
 * `npm run bench:scale`: ingest, a full FETCH and a group-by with 2, 4, 8 and 16 worker
 * processes on this one machine (R=2, BENCH_ROWS rows, default 200,000). Prints rows/s per
 * worker count and writes bench/scale-results.json. Every read is checked for its row count.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { QuerySpec } from '../common/query';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { ingest, peakRssMiB, query } from './client';
import { generate } from './data';
import { benchCluster, envInt, run } from './setup';

const TABLE = 'bench';
const GROUP: QuerySpec = { groupBy: ['city'], aggregate: [{ op: 'count' }, { op: 'avg', field: 'amount' }] };

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 200_000, 1000);
  const lanes = envInt('BENCH_LANES', 2, 1);
  const counts = (process.env.BENCH_WORKERS ?? '2,4,8,16').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 2)) throw new Error('BENCH_WORKERS must be a comma-separated list of whole numbers >= 2, e.g. 2,4,8,16');
  const postRows = Math.max(1000, Math.min(100_000, Math.ceil(rows / 8)));
  const data = generate(path.join(tempDir('scale'), 'rows.ndjson'), rows, postRows);
  const redis = await startRedis();
  const out: Record<string, number>[] = [];
  for (const workers of counts) {
    console.error(`[scale] ${workers} workers: ingest ${rows} rows at R=2`);
    const cluster = await benchCluster(redis.url, workers, 2, TABLE);
    try {
      const ingestRate = await ingest(cluster.url, TABLE, data, lanes);
      const full = await query(cluster.url, TABLE, {}, 0);
      if (full.count !== rows) throw new Error(`${workers} workers: full FETCH returned ${full.count} rows, expected ${rows}`);
      const group = await query(cluster.url, TABLE, GROUP);
      const total = group.lines.reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0);
      if (total !== rows) throw new Error(`${workers} workers: group-by counted ${total} rows, expected ${rows}`);
      const ws = [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0);
      out.push({
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
  const head = 'workers  ingest rows/s  full FETCH rows/s  group-by ms  group-by rows/s  coord RSS MiB  worker RSS MiB (max / all)';
  console.log(`\ndstore scale: ${rows} rows, R=2, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  console.log(head);
  for (const r of out) {
    console.log(
      [
        String(r.workers).padStart(7),
        Math.round(r.ingestRowsPerSec).toLocaleString('en-US').padStart(13),
        Math.round(r.fetchRowsPerSec).toLocaleString('en-US').padStart(17),
        r.groupByMs.toFixed(0).padStart(11),
        Math.round(r.groupByRowsPerSec).toLocaleString('en-US').padStart(15),
        r.coordinatorRssMiB.toFixed(0).padStart(13),
        `${r.workerRssMiB.toFixed(0)} / ${r.workersRssMiB.toFixed(0)}`.padStart(26),
      ].join('  '),
    );
  }
  const file = path.join(projectRoot(), 'bench', 'scale-results.json');
  fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rows, lanes, cores: os.cpus().length, loadavg: os.loadavg(), results: out }, null, 2) + '\n');
  console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
}

run(main);
