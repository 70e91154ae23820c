import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { readCliToken, readInt } from '../../common/config';
import { HttpClient } from '../http-client';
import { LocalCluster, stopOnSignals } from '../local-cluster';

const CITIES = ['Lyon', 'Oslo', 'Kyoto', 'Lima', 'Accra', 'Perth', 'Quito', 'Hanoi'];
const KINDS = ['view', 'click', 'buy', 'share'];

/** Writes `n` generated events (fixed seed) as NDJSON; returns the file and the totals to check against. */
function generate(file: string, n: number): { buys: number; bigSpend: number } {
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296;
  const out = fs.createWriteStream(file);
  let buys = 0;
  let bigSpend = 0;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const kind = KINDS[Math.floor(rnd() * KINDS.length)];
    const amount = Math.round(rnd() * 50000) / 100;
    if (kind === 'buy') buys++;
    if (amount > 490) bigSpend++;
    lines.push(
      JSON.stringify({
        user: `u${Math.floor(rnd() * 5000)}`,
        city: CITIES[Math.floor(rnd() * CITIES.length)],
        kind,
        amount,
        at: 1_700_000_000_000 + i * 1000,
        device: { os: rnd() < 0.5 ? 'android' : 'ios', version: Math.floor(rnd() * 10) },
      }),
    );
    if (lines.length === 10_000) out.write(lines.splice(0).join('\n') + '\n');
  }
  out.end(lines.join('\n') + '\n');
  return { buys, bigSpend };
}

/** One request through the CLI's client (so `DSTORE_TOKEN` is sent); the answer as text, NDJSON lines joined. */
async function call(client: HttpClient, method: string, p: string, body?: unknown): Promise<string> {
  if (method !== 'POST') return JSON.stringify(await client.request(method, p, body));
  const lines: string[] = [];
  for await (const l of client.streamLines(p, body)) lines.push(l);
  return lines.join('\n');
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  process.stdout.write(`  ${label.padEnd(44)} ${(performance.now() - t0).toFixed(0).padStart(6)} ms\n`);
  return out;
}

/** `dstore demo`: the main job on a local cluster, start to finish (what `npm run demo` runs). */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'start a local cluster, load generated records through the HTTP API, run a filter, a sort + limit and a group-by, print results and timings, stop',
    )
    .option('-n, --rows <n>', 'records to generate', '100000')
    .option('-w, --workers <n>', 'workers', '3')
    .action(async (o: { rows: string; workers: string }) => {
      const rows = readInt({ '--rows': o.rows }, '--rows', 100_000, 1, 100_000_000);
      const workers = readInt({ '--workers': o.workers }, '--workers', 3, 1, 64);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dstore-demo-'));
      const say = (l: string) => process.stdout.write(l + '\n');
      const cluster = new LocalCluster({
        workers,
        replicas: 2,
        port: 0,
        dataDir: dir,
        redisUrl: process.env.REDIS_URL || undefined,
        say,
        report: (l) => process.stderr.write(l + '\n'),
      });
      stopOnSignals(cluster, say, () => {
        fs.rmSync(dir, { recursive: true, force: true });
        process.exit(130);
      });
      try {
        const url = await timed(`start redis, a coordinator and ${workers} workers`, () => cluster.start());
        say(`  cluster at ${url}, R=2, data in ${dir}`);
        // The local coordinator inherits DSTORE_TOKENS from this shell; DSTORE_TOKEN is then the secret to send.
        const client = new HttpClient(url, readCliToken());
        const file = path.join(dir, 'events.ndjson');
        const expect = await timed(`generate ${rows} records`, async () => generate(file, rows));
        await call(client, 'PUT', '/tables/events', {
          schema: 'user:string,city:string,kind:string,amount:number,at:integer,device:json',
        });
        const size = fs.statSync(file).size;
        const t0 = performance.now();
        const posted = JSON.parse(
          await timed(`POST ${(size / 1048576).toFixed(1)} MiB of NDJSON`, async () => {
            const body = Readable.toWeb(fs.createReadStream(file)) as unknown as ReadableStream<Uint8Array>;
            return JSON.stringify(
              await client.request('POST', '/tables/events/records', { contentType: 'application/x-ndjson', body }),
            );
          }),
        ) as { inserted: number; chunks: number };
        const secs = (performance.now() - t0) / 1000;
        say(`  → ${posted.inserted} rows in ${posted.chunks} chunks, ${Math.round(posted.inserted / secs)} rows/s`);

        const count = await timed('count(*)', () =>
          call(client, 'POST', '/tables/events/query', { aggregate: [{ op: 'count' }] }),
        );
        const filtered = await timed('filter: kind = buy', () =>
          call(client, 'POST', '/tables/events/query', { where: { kind: 'buy' }, fields: ['_id'] }),
        );
        const top = await timed('sort + limit: top 5 amounts', () =>
          call(client, 'POST', '/tables/events/query', {
            sort: [{ field: 'amount', dir: 'desc' }],
            limit: 5,
            fields: ['user', 'city', 'amount'],
          }),
        );
        const byCity = await timed('group-by: per city count, sum, avg', () =>
          call(client, 'POST', '/tables/events/query', {
            groupBy: ['city'],
            aggregate: [
              { op: 'count' },
              { op: 'sum', field: 'amount', as: 'revenue' },
              { op: 'avg', field: 'amount', as: 'avg' },
            ],
            sort: [{ field: 'revenue', dir: 'desc' }],
          }),
        );
        const big = await timed('filter: amount > 490 (count)', () =>
          call(client, 'POST', '/tables/events/query', {
            where: { amount: { $gt: 490 } },
            aggregate: [{ op: 'count' }],
          }),
        );
        say('');
        say(`count(*):            ${count.trim()}`);
        say(`kind = buy:          ${filtered.trim().split('\n').length} rows (generated: ${expect.buys})`);
        say(`amount > 490:        ${big.trim()} (generated: ${expect.bigSpend})`);
        say('top 5 amounts:');
        for (const l of top.trim().split('\n')) say(`  ${l}`);
        say('per city:');
        for (const l of byCity.trim().split('\n')) {
          const r = JSON.parse(l) as { city: string; count: number; revenue: number; avg: number };
          say(
            `  ${r.city.padEnd(6)} ${String(r.count).padStart(7)} events  ${r.revenue.toFixed(2).padStart(12)} revenue  ${r.avg.toFixed(2).padStart(7)} avg`,
          );
        }
        const ok =
          JSON.parse(count).count === rows &&
          filtered.trim().split('\n').length === expect.buys &&
          JSON.parse(big).count === expect.bigSpend;
        say('');
        say(
          ok
            ? 'check: every figure matches the generated data'
            : 'check: MISMATCH between dstore and the generated data',
        );
        if (!ok) process.exitCode = 1;
      } finally {
        await cluster.stop();
        fs.rmSync(dir, { recursive: true, force: true });
        say('cluster stopped');
      }
    });
}
