/**
 * `npm run bench`: one run on one machine. Starts its own Redis and clusters (4 workers),
 * generates BENCH_ROWS rows (default 1,000,000, ~150 bytes, fixed seed) and measures dstore
 * beside its baselines in the same run: ingest at R=1 and R=2 vs one SQLite file, the broker
 * limit, PostgreSQL COPY (when PG_URL answers), reads vs one SQLite file answering the same
 * query, and the peak RSS of every child. Prints one table, writes bench/results.json, and
 * exits 1 when a read is wrong or a ratio misses its target by more than 10x (the CI guard).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { QuerySpec } from '../common/query';
import { combineAggregates } from '../coordinator/fetch-merger';
import type { FetchRespMessage } from '../common/messages';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { brokerLimit, percentiles, pgCopy, SqliteBaseline } from './baselines';
import { ingest, peakRssMiB, query } from './client';
import { generate, rowId } from './data';
import { broken, met, table, type Figure } from './report';
import { benchCluster, envInt, run } from './setup';

const WORKERS = 4;
const TABLE = 'bench';
const LOOKUPS = 1000;

const FILTER: QuerySpec = { where: { cat: 'c42' } };
const SORT: QuerySpec = { sort: [{ field: 'amount', dir: 'desc' }], limit: 100 };
const GROUP: QuerySpec = {
  groupBy: ['city'],
  aggregate: [{ op: 'count' }, { op: 'sum', field: 'qty' }, { op: 'avg', field: 'amount' }],
};

function log(msg: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** Final aggregate rows of a one-file answer, as the coordinator would combine them. */
function combined(lines: string[], q: QuerySpec): string[] {
  return [...combineAggregates([{ rows: lines } as FetchRespMessage], q.groupBy ?? [], q.aggregate!, q.sort, q.limit)];
}

/** Same groups, same counts and sums, averages equal to 1e-9 (summation order differs). */
function sameAggregates(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((line, i) => {
    const x = JSON.parse(line) as Record<string, number | string>;
    const y = JSON.parse(b[i]) as Record<string, number | string>;
    return Object.keys(x).every((k) =>
      typeof x[k] === 'number'
        ? Math.abs((x[k] as number) - (y[k] as number)) <= 1e-9 * Math.max(1, Math.abs(x[k] as number))
        : x[k] === y[k],
    );
  });
}

function check(ok: boolean, what: string, problems: string[]): void {
  if (!ok) problems.push(what);
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 1_000_000, 1000);
  const lanes = envInt('BENCH_LANES', 2, 1);
  const postRows = envInt('BENCH_POST_ROWS', Math.max(1000, Math.min(100_000, Math.ceil(rows / 8))), 1);
  const dir = tempDir('bench');
  const problems: string[] = [];
  const started = Date.now();

  log(`generating ${rows} rows`);
  const data = generate(path.join(dir, 'rows.ndjson'), rows, postRows);
  log(
    `${data.bytes} bytes (${(data.bytes / rows).toFixed(0)} per row), ${data.slices.length} POSTs of up to ${postRows} rows, ${lanes} at a time`,
  );

  // Baselines first: one SQLite file, then the broker alone, then PostgreSQL.
  const sqlite = new SqliteBaseline(path.join(dir, 'baseline.sqlite'));
  const sqliteInsert = await sqlite.insert(data);
  log(`SQLite insert: ${sqliteInsert.toFixed(0)} rows/s`);
  const redis = await startRedis();
  const broker = await brokerLimit(redis.url, `bench${process.pid}`, data);
  log(`broker XADD + XREAD: ${broker.toFixed(0)} rows/s`);
  const pg = await pgCopy(process.env.PG_URL, data);
  log(pg.rowsPerSec ? `PostgreSQL COPY: ${pg.rowsPerSec.toFixed(0)} rows/s` : `PostgreSQL COPY skipped: ${pg.note}`);

  // dstore at R=1: ingest only.
  log(`dstore R=1, ${WORKERS} workers: ingest`);
  let cluster = await benchCluster(redis.url, WORKERS, 1, TABLE);
  const ingestR1 = await ingest(cluster.url, TABLE, data, lanes);
  const rssR1 = {
    coordinator: peakRssMiB(cluster.coordinator.pid),
    workers: [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0),
  };
  log(`ingest R=1: ${ingestR1.toFixed(0)} rows/s`);
  await cluster.stop();

  // dstore at R=2: ingest, then every read.
  log(`dstore R=2, ${WORKERS} workers: ingest`);
  cluster = await benchCluster(redis.url, WORKERS, 2, TABLE);
  const ingestR2 = await ingest(cluster.url, TABLE, data, lanes);
  log(`ingest R=2: ${ingestR2.toFixed(0)} rows/s`);
  const rssLoad = {
    coordinator: peakRssMiB(cluster.coordinator.pid) ?? 0,
    workers: [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0),
  };

  log('reads: full FETCH');
  const full = await query(cluster.url, TABLE, {}, 0);
  const fullBase = sqlite.query({});
  check(
    full.count === rows && fullBase.count === rows,
    `full FETCH returned ${full.count} rows (baseline ${fullBase.count}), expected ${rows}`,
    problems,
  );

  log('reads: filter, sort + limit, group-by');
  const filter = await query(cluster.url, TABLE, FILTER);
  const filterBase = sqlite.query(FILTER);
  check(
    filter.count === filterBase.count && filter.count > 0,
    `filter returned ${filter.count} rows, one SQLite file ${filterBase.count}`,
    problems,
  );
  const sorted = await query(cluster.url, TABLE, SORT);
  const sortedBase = sqlite.query(SORT);
  const sortedIds = sorted.lines.map((l) => (JSON.parse(l) as { _id: string })._id);
  const sortedBaseIds = sortedBase.lines.map((l) => (JSON.parse(l) as unknown[])[1]);
  check(
    JSON.stringify(sortedIds) === JSON.stringify(sortedBaseIds),
    'sort + limit 100 differs from one SQLite file',
    problems,
  );
  const group = await query(cluster.url, TABLE, GROUP);
  const groupBase = sqlite.query(GROUP);
  check(
    sameAggregates(group.lines, combined(groupBase.lines, GROUP)),
    `group-by differs from one SQLite file:\n${group.lines.join('\n')}\nvs\n${combined(groupBase.lines, GROUP).join('\n')}`,
    problems,
  );

  log(`reads: ${LOOKUPS} point lookups by _id`);
  const ids = Array.from({ length: LOOKUPS }, (_, i) => rowId(Math.floor(((i * 7919) % LOOKUPS) * (rows / LOOKUPS))));
  const times: number[] = [];
  for (const id of ids) {
    const r = await query(cluster.url, TABLE, { where: { _id: id } });
    if (r.count !== 1 || !r.lines[0].includes(`"_id":"${id}"`))
      problems.push(`lookup of ${id} returned ${r.count} rows`);
    times.push(r.ms);
  }
  const lookup = percentiles(times);
  const lookupBase = sqlite.lookups(ids);
  const rssEnd = {
    coordinator: peakRssMiB(cluster.coordinator.pid) ?? 0,
    workers: [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0),
  };
  await cluster.stop();
  sqlite.close();

  const figures: Figure[] = [
    {
      name: 'ingest R=1',
      unit: 'rows/s',
      dstore: ingestR1,
      baseline: sqliteInsert,
      baselineName: 'SQLite insert',
      better: 'higher',
      target: 0.8,
    },
    {
      name: 'ingest R=2',
      unit: 'rows/s',
      dstore: ingestR2,
      baseline: sqliteInsert,
      baselineName: 'SQLite insert',
      better: 'higher',
      target: 0.5,
    },
    {
      name: 'ingest R=1 vs broker',
      unit: 'rows/s',
      dstore: ingestR1,
      baseline: broker,
      baselineName: 'XADD+XREAD',
      better: 'higher',
    },
    pg.rowsPerSec
      ? {
          name: 'ingest R=1 vs PostgreSQL',
          unit: 'rows/s',
          dstore: ingestR1,
          baseline: pg.rowsPerSec,
          baselineName: 'PG COPY',
          better: 'higher',
        }
      : {
          name: 'ingest R=1 vs PostgreSQL',
          unit: 'rows/s',
          dstore: ingestR1,
          better: 'higher',
          note: `skipped: ${pg.note}`,
        },
    {
      name: 'full FETCH',
      unit: 'rows/s',
      dstore: rows / (full.ms / 1000),
      baseline: rows / (fullBase.ms / 1000),
      baselineName: 'SQLite scan',
      better: 'higher',
      target: 0.5,
    },
    { name: 'filter ~1%', unit: 'ms', dstore: filter.ms, baseline: filterBase.ms, better: 'lower', target: 1.5 },
    { name: 'sort + limit 100', unit: 'ms', dstore: sorted.ms, baseline: sortedBase.ms, better: 'lower' },
    { name: 'group-by aggregate', unit: 'ms', dstore: group.ms, baseline: groupBase.ms, better: 'lower', target: 1.5 },
    { name: 'point lookup p50', unit: 'ms', dstore: lookup.p50, baseline: lookupBase.p50, better: 'lower' },
    {
      name: 'point lookup p99',
      unit: 'ms',
      dstore: lookup.p99,
      better: 'lower',
      target: 20,
      note: `SQLite ${lookupBase.p99.toFixed(3)} ms`,
    },
    {
      name: 'coordinator peak RSS',
      unit: 'MiB',
      dstore: rssLoad.coordinator,
      better: 'lower',
      target: 300,
      note: `after reads ${rssEnd.coordinator.toFixed(0)}`,
    },
    {
      name: 'worker peak RSS (max)',
      unit: 'MiB',
      dstore: Math.max(...rssLoad.workers),
      better: 'lower',
      target: 300,
      note: `after reads ${Math.max(...rssEnd.workers).toFixed(0)}`,
    },
  ];

  console.log(
    `\ndstore bench: ${rows} rows (${(data.bytes / rows).toFixed(0)} B each), ${WORKERS} workers, ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  console.log(table(figures));
  const guard = figures.filter((f) => broken(f)).map((f) => `${f.name}: more than 10x off its target`);
  problems.push(...guard);

  const results = {
    at: new Date().toISOString(),
    rows,
    bytes: data.bytes,
    workers: WORKERS,
    lanes,
    postRows,
    cores: os.cpus().length,
    loadavg: os.loadavg(),
    seconds: (Date.now() - started) / 1000,
    figures: figures.map((f) => ({ ...f, ratio: f.baseline ? f.dstore / f.baseline : undefined, met: met(f) })),
    rss: { r1: rssR1, load: rssLoad, end: rssEnd },
    problems,
  };
  const out = path.join(projectRoot(), 'bench', 'results.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
  console.log(`\nwritten: ${path.relative(process.cwd(), out)}`);
  if (problems.length) {
    console.error(`\nbench FAILED:\n- ${problems.join('\n- ')}`);
    process.exitCode = 1;
  }
}

run(main);
