/**
 * `npm run bench`: one run on one machine. Starts its own Redis and clusters (4 workers),
 * generates BENCH_ROWS rows (default 1,000,000, ~150 bytes, fixed seed) and measures dstore
 * beside its baselines in the same run: ingest at R=1 and R=2 vs one SQLite file (at
 * synchronous=NORMAL, baseline (a), and at dstore's own setting, baseline (b)), the broker
 * limit, PostgreSQL COPY (when PG_URL answers), reads vs the same files answering the same
 * query, the CPU every process spends per row (or per lookup), and the peak RSS of every
 * child. Prints two tables (wall clock, CPU), writes bench/results.json, and exits 1 when a
 * read is wrong or a figure misses its target by more than 10x (the CI guard).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { QuerySpec } from '../common/query';
import { readOne } from '../common/settings';
import type { TestCluster } from '../test/support/cluster';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { brokerLimit, percentiles, pgCopy, SqliteBaseline, type BaselineRead } from './baselines';
import { ingest, query, type ReadResult } from './client';
import {
  clockTicks,
  clusterPids,
  cpuSource,
  peakRssMiB,
  perUnit,
  redisPid,
  withCpu,
  type ClusterPids,
  type CpuUse,
} from './cpu';
import { generate, rowId, type DataSet } from './data';
import { broken, cpuAsFigure, cpuTable, met, table, type CpuFigure, type Figure } from './report';
import { benchCluster, envInt, run, settled } from './setup';

const WORKERS = 4;
const TABLE = 'bench';
const LOOKUPS = 1000;

const FILTER: QuerySpec = { where: { cat: 'c42' } };
const SORT: QuerySpec = { sort: [{ field: 'amount', dir: 'desc' }], limit: 100 };
const GROUP: QuerySpec = {
  groupBy: ['city'],
  aggregate: [{ op: 'count' }, { op: 'sum', field: 'qty' }, { op: 'avg', field: 'amount' }],
};

/** Issue 16's targets by figure name: a ratio to SQLite (a) where there is one, else absolute. */
const TARGETS: Record<string, number> = {
  'ingest R=1': 0.9,
  'ingest R=2': 0.55,
  'full FETCH': 0.8,
  'filter ~1%': 1.5,
  'group-by aggregate': 1.5,
  'point lookup p50': 1,
  'point lookup p99': 5,
  'coordinator peak RSS': 300,
  'worker peak RSS (max)': 300,
};

/** Issue 16's CPU targets: all processes of dstore / SQLite (a), per row. */
const CPU_TARGETS: Record<string, number> = { 'ingest R=2': 3, 'full FETCH': 1.5 };

function log(msg: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
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

function ids(lines: string[]): string {
  return JSON.stringify(lines.map((l) => (JSON.parse(l) as { _id: string })._id));
}

function check(ok: boolean, what: string, problems: string[]): void {
  if (!ok) problems.push(what);
}

function rss(cluster: TestCluster): { coordinator: number; workers: number[] } {
  return {
    coordinator: peakRssMiB(cluster.coordinator.pid) ?? 0,
    workers: [...cluster.workers.values()].map((w) => peakRssMiB(w.child.pid) ?? 0),
  };
}

/** Ingests `data` and returns its rows/s (until the last POST answered), after every replica has applied it. */
async function load(cluster: TestCluster, data: DataSet, lanes: number): Promise<number> {
  const rate = await ingest(cluster.url, TABLE, data, lanes);
  await settled(cluster);
  return rate;
}

/** One read through dstore and through both SQLite files, each with the CPU it took. */
interface Read {
  dstore: { value: ReadResult; cpu: CpuUse };
  a: { value: BaselineRead; cpu: CpuUse };
  b: { value: BaselineRead; cpu: CpuUse };
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 1_000_000, 1000);
  const lanes = envInt('BENCH_LANES', 2, 1);
  const postRows = envInt('BENCH_POST_ROWS', Math.max(1000, Math.min(100_000, Math.ceil(rows / 8))), 1);
  const sync = readOne(process.env, 'DSTORE_SQLITE_SYNC');
  const dir = tempDir('bench');
  const problems: string[] = [];
  const started = Date.now();

  log(`generating ${rows} rows`);
  const data = generate(path.join(dir, 'rows.ndjson'), rows, postRows);
  log(
    `${data.bytes} bytes (${(data.bytes / rows).toFixed(0)} per row), ${data.slices.length} POSTs of up to ${postRows} rows, ${lanes} at a time`,
  );

  // Baselines first: one SQLite file at dstore's setting and at NORMAL, the broker alone, PostgreSQL.
  const one = new SqliteBaseline(path.join(dir, 'a.sqlite'), 'normal');
  const oneSync = new SqliteBaseline(path.join(dir, 'b.sqlite'), sync);
  // (b) first: the first load pays for warming up the JIT, which would flatter dstore's ratios to (a).
  const insertB = await withCpu(undefined, () => oneSync.insert(data));
  log(`SQLite insert, synchronous=${sync.toUpperCase()}: ${insertB.value.toFixed(0)} rows/s`);
  const insertA = await withCpu(undefined, () => one.insert(data));
  log(`SQLite insert, synchronous=NORMAL: ${insertA.value.toFixed(0)} rows/s`);
  const redis = await startRedis();
  const redisProc = await redisPid(redis);
  if (redisProc === undefined) log(`Redis (${redis.kind}) is not a process here: its CPU is not counted`);
  const broker = await brokerLimit(redis.url, `bench${process.pid}`, data);
  log(`broker XADD + XREAD: ${broker.toFixed(0)} rows/s`);
  const pg = await pgCopy(process.env.PG_URL, data);
  log(pg.rowsPerSec ? `PostgreSQL COPY: ${pg.rowsPerSec.toFixed(0)} rows/s` : `PostgreSQL COPY skipped: ${pg.note}`);

  // dstore at R=1: ingest only.
  log(`dstore R=1, ${WORKERS} workers: ingest`);
  let cluster = await benchCluster(redis.url, WORKERS, 1, TABLE);
  const ingestR1 = await withCpu(clusterPids(cluster, redisProc), () => load(cluster, data, lanes));
  const rssR1 = rss(cluster);
  log(`ingest R=1: ${ingestR1.value.toFixed(0)} rows/s`);
  await cluster.stop();

  // dstore at R=2: ingest, then every read.
  log(`dstore R=2, ${WORKERS} workers: ingest`);
  cluster = await benchCluster(redis.url, WORKERS, 2, TABLE);
  const pids: ClusterPids = clusterPids(cluster, redisProc);
  const ingestR2 = await withCpu(pids, () => load(cluster, data, lanes));
  log(`ingest R=2: ${ingestR2.value.toFixed(0)} rows/s`);
  const rssLoad = rss(cluster);

  const read = async (q: QuerySpec, keep?: number): Promise<Read> => ({
    dstore: await withCpu(pids, () => query(cluster.url, TABLE, q, keep)),
    a: await withCpu(undefined, () => one.query(q)),
    b: await withCpu(undefined, () => oneSync.query(q)),
  });

  log('reads: full FETCH');
  const full = await read({}, 0);
  check(
    full.dstore.value.count === rows && full.a.value.count === rows && full.b.value.count === rows,
    `full FETCH returned ${full.dstore.value.count} rows (SQLite ${full.a.value.count}, ${full.b.value.count}), expected ${rows}`,
    problems,
  );

  log('reads: filter, sort + limit, group-by');
  const filter = await read(FILTER);
  const counts = [filter.dstore, filter.a, filter.b].map((r) => r.value.count);
  check(
    counts[0] > 0 && counts.every((c) => c === counts[0]),
    `filter returned ${counts[0]} rows, the SQLite files ${counts[1]} and ${counts[2]}`,
    problems,
  );
  const sorted = await read(SORT);
  check(
    ids(sorted.dstore.value.lines) === ids(sorted.a.value.lines) &&
      ids(sorted.a.value.lines) === ids(sorted.b.value.lines),
    'sort + limit 100 differs from one SQLite file',
    problems,
  );
  const group = await read(GROUP);
  check(
    sameAggregates(group.dstore.value.lines, group.a.value.lines) &&
      sameAggregates(group.a.value.lines, group.b.value.lines),
    `group-by differs from one SQLite file:\n${group.dstore.value.lines.join('\n')}\nvs\n${group.a.value.lines.join('\n')}`,
    problems,
  );

  log(`reads: ${LOOKUPS} point lookups by _id`);
  const lookupIds = Array.from({ length: LOOKUPS }, (_, i) =>
    rowId(Math.floor(((i * 7919) % LOOKUPS) * (rows / LOOKUPS))),
  );
  const lookup = await withCpu(pids, async () => {
    const times: number[] = [];
    for (const id of lookupIds) {
      const r = await query(cluster.url, TABLE, { where: { _id: id } });
      if (r.count !== 1 || !r.lines[0].includes(`"_id":"${id}"`))
        problems.push(`lookup of ${id} returned ${r.count} rows`);
      times.push(r.ms);
    }
    return percentiles(times);
  });
  const lookupA = await withCpu(undefined, () => one.lookups(lookupIds));
  const lookupB = await withCpu(undefined, () => oneSync.lookups(lookupIds));
  const rssEnd = rss(cluster);
  await cluster.stop();
  one.close();
  oneSync.close();

  const A = 'SQLite (a)';
  const B = `SQLite (b) ${sync}`;
  const vs = (name: string, unit: string, dstore: number, baseline: number, baselineName?: string): Figure => ({
    name,
    unit,
    dstore,
    baseline,
    baselineName,
    better: unit === 'rows/s' ? 'higher' : 'lower',
    target: TARGETS[name],
  });
  const alone = (name: string, unit: string, dstore: number, note: string): Figure => ({
    name,
    unit,
    dstore,
    note,
    better: 'lower',
    target: TARGETS[name],
  });
  const figures: Figure[] = [
    vs('ingest R=1', 'rows/s', ingestR1.value, insertA.value, A),
    vs('ingest R=2', 'rows/s', ingestR2.value, insertA.value, A),
    vs('ingest R=1 vs (b)', 'rows/s', ingestR1.value, insertB.value, B),
    vs('ingest R=2 vs (b)', 'rows/s', ingestR2.value, insertB.value, B),
    vs('ingest R=1 vs broker', 'rows/s', ingestR1.value, broker, 'XADD+XREAD'),
    pg.rowsPerSec
      ? vs('ingest R=1 vs PostgreSQL', 'rows/s', ingestR1.value, pg.rowsPerSec, 'PG COPY')
      : {
          name: 'ingest R=1 vs PostgreSQL',
          unit: 'rows/s',
          dstore: ingestR1.value,
          better: 'higher',
          note: `skipped: ${pg.note}`,
        },
    vs('full FETCH', 'rows/s', rows / (full.dstore.value.ms / 1000), rows / (full.a.value.ms / 1000), A),
    vs('filter ~1%', 'ms', filter.dstore.value.ms, filter.a.value.ms, A),
    vs('sort + limit 100', 'ms', sorted.dstore.value.ms, sorted.a.value.ms, A),
    vs('group-by aggregate', 'ms', group.dstore.value.ms, group.a.value.ms, A),
    alone('point lookup p50', 'ms', lookup.value.p50, `${A} ${lookupA.value.p50.toFixed(3)} ms`),
    alone('point lookup p99', 'ms', lookup.value.p99, `${A} ${lookupA.value.p99.toFixed(3)} ms`),
    alone('coordinator peak RSS', 'MiB', rssLoad.coordinator, `after reads ${rssEnd.coordinator.toFixed(0)}`),
    alone(
      'worker peak RSS (max)',
      'MiB',
      Math.max(...rssLoad.workers),
      `after reads ${Math.max(...rssEnd.workers).toFixed(0)}`,
    ),
  ];

  const cpuOf = (name: string, unit: string, units: number, d: CpuUse, a: CpuUse, b: CpuUse): CpuFigure => ({
    name,
    unit,
    dstore: perUnit(d, units),
    baselineA: perUnit(a, units).all,
    baselineB: perUnit(b, units).all,
    target: CPU_TARGETS[name],
  });
  const cpuRead = (name: string, r: Read) => cpuOf(name, 'µs/row', rows, r.dstore.cpu, r.a.cpu, r.b.cpu);
  const cpu: CpuFigure[] = [
    cpuOf('ingest R=1', 'µs/row', rows, ingestR1.cpu, insertA.cpu, insertB.cpu),
    cpuOf('ingest R=2', 'µs/row', rows, ingestR2.cpu, insertA.cpu, insertB.cpu),
    cpuRead('full FETCH', full),
    cpuRead('filter ~1%', filter),
    cpuRead('sort + limit 100', sorted),
    cpuRead('group-by aggregate', group),
    cpuOf('point lookup', 'µs/lookup', LOOKUPS, lookup.cpu, lookupA.cpu, lookupB.cpu),
  ];

  const loadavg = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const src = cpuSource();
  console.log(
    `\ndstore bench: ${rows} rows (${(data.bytes / rows).toFixed(0)} B each), ${WORKERS} workers, ` +
      `${os.cpus().length} cores, load ${loadavg}\n` +
      `SQLite (a): one file in one process, WAL, synchronous=NORMAL; ` +
      `(b): the same at dstore's synchronous=${sync.toUpperCase()} (DSTORE_SQLITE_SYNC)\n`,
  );
  console.log(table(figures));
  console.log(
    `\nCPU per row ingested, read or in the table scanned (per lookup for lookups), in µs; ` +
      `workers: sum of ${WORKERS}; client and SQLite: this process (process.cpuUsage); ` +
      `others: ${src === 'schedstat' ? '/proc/<pid>/task/*/schedstat (ns)' : `/proc/<pid>/stat (1/${clockTicks()} s ticks)`}` +
      `${redisProc === undefined ? '; Redis not measured' : ''}\n`,
  );
  console.log(cpuTable(cpu));
  const guarded = [...figures, ...cpu.map(cpuAsFigure)];
  problems.push(...guarded.filter((f) => broken(f)).map((f) => `${f.name}: more than 10x off its target`));

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
    baselines: { a: { synchronous: 'normal' }, b: { synchronous: sync } },
    figures: figures.map((f) => ({ ...f, ratio: f.baseline ? f.dstore / f.baseline : undefined, met: met(f) })),
    cpu: {
      source: src,
      clockTicks: src === 'stat' ? clockTicks() : undefined,
      redisMeasured: redisProc !== undefined,
      figures: cpu.map((c) => ({ ...c, ratio: c.dstore.all / c.baselineA, met: met(cpuAsFigure(c)) })),
    },
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
