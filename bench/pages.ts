/**
 * `npm run bench:pages`: what a page costs deep into a result (issue 18, keyset cursors).
 * Loads BENCH_ROWS rows (default 200,000) into 4 workers at R = 2, and follows the cursors of
 * a read page by page (BENCH_PAGE rows a page, default 100) for three orders: `_id` (no sort),
 * an indexed sort key (`amount`, descending), and the same key without its index. It times
 * early pages (11-15, once warm; page 1 is shown apart) against pages deep into the result
 * (page BENCH_DEEP, default 1,000, or as deep as the rows go), each the median of 5 pages.
 * OFFSET paging (SQLite reading and dropping every row before the page) is what keyset
 * cursors avoid, so the ratio should stay near 1. Every row is checked to come exactly once,
 * in order. Writes bench/pages-results.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { QuerySpec } from '../common/query';
import { projectRoot, tempDir } from '../test/support/processes';
import { startRedis } from '../test/support/redis';
import { ingest, query } from './client';
import { generate } from './data';
import { benchCluster, envInt, settled } from './setup';

const TABLE = 'bench';
const WORKERS = 4;

function log(msg: string): void {
  console.error(`[pages ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Walk {
  order: string;
  pages: number;
  rows: number;
  /** Page 1 alone (cold: connections, caches). */
  page1Ms: number;
  /** Pages 11-15, once warm. */
  firstMs: number;
  deepMs: number;
  deepPage: number;
}

/** Follows cursors from the first page through page `deep` (+4); times page 1, pages 11-15 and deep..deep+4. */
async function walk(url: string, order: string, q: QuerySpec, page: number, deep: number): Promise<Walk> {
  let cursor: string | undefined;
  const times: number[] = [];
  const seen = new Set<string>();
  let n = 0;
  for (; n < deep + 5; n++) {
    const r = await query(url, TABLE, { ...q, limit: page, ...(cursor ? { cursor } : {}) } as QuerySpec, page + 1);
    times.push(r.ms);
    const next = r.next;
    for (const l of r.lines) {
      const id = (JSON.parse(l) as { _id: string })._id;
      if (seen.has(id)) throw new Error(`${order}: row ${id} came twice`);
      seen.add(id);
    }
    if (!next) {
      n++;
      break;
    }
    cursor = next;
  }
  const deepFrom = Math.max(15, Math.min(deep - 1, n - 5));
  return {
    order,
    pages: n,
    rows: seen.size,
    page1Ms: times[0],
    firstMs: median(times.slice(10, 15)),
    deepMs: median(times.slice(deepFrom, deepFrom + 5)),
    deepPage: deepFrom + 1,
  };
}

async function main(): Promise<void> {
  const rows = envInt('BENCH_ROWS', 200_000, 1000);
  const page = envInt('BENCH_PAGE', 100, 1);
  const deep = envInt('BENCH_DEEP', 1000, 10);
  const dir = tempDir('bench-pages');
  log(`generating ${rows} rows`);
  const data = generate(path.join(dir, 'rows.ndjson'), rows, Math.max(1000, Math.min(100_000, Math.ceil(rows / 8))));
  const redis = await startRedis();
  const cluster = await benchCluster(redis.url, WORKERS, 2, TABLE);
  try {
    log(`loading ${rows} rows into ${WORKERS} workers at R=2`);
    await ingest(cluster.url, TABLE, data, 2);
    await settled(cluster);
    const out: Walk[] = [];
    log('walking: _id order');
    out.push(await walk(cluster.url, '_id (no sort)', {}, page, deep));
    log('walking: amount desc, unindexed');
    out.push(
      await walk(cluster.url, 'amount desc, no index', { sort: [{ field: 'amount', dir: 'desc' }] }, page, deep),
    );
    const r = await cluster.api('PUT', `/tables/${TABLE}/indexes/by_amount`, { fields: ['amount'] });
    if (r.status !== 201) throw new Error(`creating the index answered ${r.status}`);
    for (let i = 0; ; i++) {
      const l = await cluster.api<{ indexes: { workers: Record<string, { state: string }> }[] }>(
        'GET',
        `/tables/${TABLE}/indexes`,
      );
      if (Object.values(l.body.indexes[0].workers).every((w) => w.state === 'ready')) break;
      if (i > 600) throw new Error('index not ready after 150 s');
      await new Promise((res) => setTimeout(res, 250));
    }
    log('walking: amount desc, indexed');
    out.push(await walk(cluster.url, 'amount desc, indexed', { sort: [{ field: 'amount', dir: 'desc' }] }, page, deep));
    console.log(
      `\ndstore pages: ${rows} rows, ${WORKERS} workers, R=2, ${os.cpus().length} cores; ${page} rows a page; median of 5 pages each\n`,
    );
    console.log('order                    pages walked  page 1 ms  pages 11-15 ms  deep page  deep ms  deep / 11-15');
    for (const w of out)
      console.log(
        [
          w.order.padEnd(24),
          String(w.pages).padStart(12),
          w.page1Ms.toFixed(1).padStart(9),
          w.firstMs.toFixed(1).padStart(14),
          String(w.deepPage).padStart(9),
          w.deepMs.toFixed(1).padStart(8),
          `${(w.deepMs / w.firstMs).toFixed(2)}x`.padStart(13),
        ].join('  '),
      );
    const file = path.join(projectRoot(), 'bench', 'pages-results.json');
    fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rows, page, walks: out }, null, 2) + '\n');
    console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
  } finally {
    await cluster.stop();
    await redis.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
