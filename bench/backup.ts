/**
 * `npm run bench:backup`: what a backup and a restore of BENCH_ROWS rows (default 1,000,000)
 * cost, against what a user would do without them: read every row out (one query, NDJSON
 * to a file) and POST them again. 4 workers at R = 2. Phases, each timed with the CPU of every
 * process per row:
 * - load (the rows POSTed, for reference);
 * - `backup create` (the cut, one snapshot read per chunk, the SQLite files, the manifest);
 * - `backup verify` (checksums, integrity check, row counts; this process only);
 * - `backup restore --as` into a new table (one streamed POST, the index rebuilt);
 * - read every row to an NDJSON file, and POST that file into another new table.
 * The restored and re-POSTed tables are read back and counted. Writes bench/backup-results.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createBackup, restoreBackup } from '../cli/commands/backup';
import { readManifest, verifyTable } from '../cli/backup-files';
import { HttpClient } from '../cli/http-client';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { ingest, query } from './client';
import { clusterPids, perUnit, redisPid, withCpu, type CpuPerUnit } from './cpu';
import { generate } from './data';
import { benchCluster, envInt, run, settled } from './setup';

const TABLE = 'bench';
const WORKERS = 4;

function log(msg: string): void {
  console.error(`[backup ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

interface Phase {
  phase: string;
  seconds: number;
  rowsPerS: number;
  cpuPerRowUs: CpuPerUnit;
  bytes?: number;
}

/** Every row of `table` as NDJSON into `file`; resolves the rows and bytes written. */
async function readToFile(url: string, table: string, file: string): Promise<{ rows: number; bytes: number }> {
  const res = await fetch(`${url}/tables/${table}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  if (!res.ok || !res.body) throw new Error(`reading ${table} answered ${res.status}`);
  const out = fs.createWriteStream(file);
  let rows = 0;
  let bytes = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
    bytes += chunk.length;
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
  return { rows, bytes };
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 1_000_000, 1000);
  const dir = tempDir('bench-backup');
  const postRows = Math.max(1000, Math.min(50_000, Math.ceil(rows / 8)));
  log(`generating ${rows} rows`);
  const data = generate(path.join(dir, 'rows.ndjson'), rows, postRows);
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, WORKERS, 2, TABLE);
  const client = new HttpClient(cluster.url);
  const out: Phase[] = [];
  try {
    await client.request('PUT', `/tables/${TABLE}/indexes/by_city`, { fields: ['city'] });
    const pids = clusterPids(cluster, await redisPid(redis));
    const phase = async (name: string, n: number, fn: () => Promise<number | undefined>) => {
      log(name);
      const t0 = performance.now();
      const r = await withCpu(pids, fn);
      await settled(cluster, 600_000);
      const seconds = (performance.now() - t0) / 1000;
      out.push({ phase: name, seconds, rowsPerS: n / seconds, cpuPerRowUs: perUnit(r.cpu, n), bytes: r.value });
    };
    await phase('load (POST, 2 at a time)', rows, async () => {
      await ingest(cluster.url, TABLE, data, 2);
      return data.bytes;
    });
    const backupDir = path.join(dir, 'backup');
    await phase('backup create', rows, async () => {
      const m = await createBackup(client, backupDir);
      if (m.tables[0].rows !== rows) throw new Error(`the backup holds ${m.tables[0].rows} rows, want ${rows}`);
      return dirBytes(backupDir);
    });
    await phase('backup verify', rows, async () => {
      const m = readManifest(backupDir);
      for (const t of m.tables) {
        const wrong = await verifyTable(backupDir, t);
        if (wrong) throw new Error(wrong);
      }
      return undefined;
    });
    await phase('backup restore --as (one POST, index declared)', rows, async () => {
      await restoreBackup(client, backupDir, { table: TABLE, as: 'restored' });
      return undefined;
    });
    const readFile = path.join(dir, 'read.ndjson');
    await phase('read every row to NDJSON', rows, async () => {
      const r = await readToFile(cluster.url, TABLE, readFile);
      if (r.rows !== rows) throw new Error(`read ${r.rows} rows, want ${rows}`);
      return r.bytes;
    });
    await client.request('PUT', '/tables/reposted', {});
    await phase('POST them again (2 at a time)', rows, async () => {
      await ingest(cluster.url, 'reposted', data, 2);
      return undefined;
    });
    for (const t of ['restored', 'reposted']) {
      const got = await query(cluster.url, t, { aggregate: [{ op: 'count' }] });
      const n = (JSON.parse(got.lines[0]) as Record<string, number>).count;
      if (n !== rows) throw new Error(`${t} holds ${n} rows, want ${rows}`);
    }
    console.log(
      `\ndstore backup: ${rows} rows (${(data.bytes / 1e6).toFixed(0)} MB of NDJSON), ${WORKERS} workers, R=2, ${os.cpus().length} cores\n`,
    );
    console.log(
      'phase                                         seconds    rows/s     size  CPU µs/row: coord  workers  redis  client   all',
    );
    const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
    for (const p of out) {
      const c = p.cpuPerRowUs;
      console.log(
        [
          p.phase.padEnd(44),
          p.seconds.toFixed(1).padStart(7),
          Math.round(p.rowsPerS).toString().padStart(9),
          (p.bytes === undefined ? '-' : `${(p.bytes / 1e6).toFixed(0)} MB`).padStart(8),
          f(c.coordinator).padStart(17),
          f(c.workersSum).padStart(7),
          f(c.redis).padStart(5),
          f(c.client).padStart(6),
          f(c.all).padStart(5),
        ].join('  '),
      );
    }
    const secs = (name: string) => out.find((p) => p.phase.startsWith(name))!.seconds;
    console.log(
      `\nbackup + restore: ${(secs('backup create') + secs('backup restore')).toFixed(1)} s; read + POST again: ${(secs('read every row') + secs('POST them again')).toFixed(1)} s`,
    );
    const file = path.join(projectRoot(), 'bench', 'backup-results.json');
    fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rows, phases: out }, null, 2) + '\n');
    console.log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    await cluster.stop();
    await redis.stop();
  }
}

run(main);
