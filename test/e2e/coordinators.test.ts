import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';

describe('e2e: two coordinators on one Redis', function () {
  this.timeout(120_000);
  let url2: string;

  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '250' } });

  before(async () => {
    url2 = (await e2e.cluster.spawnCoordinator('coordinator-2')).url;
  });

  async function post(base: string, table: string, rows: Row[]): Promise<number> {
    const res = await fetch(`${base}/tables/${table}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: rows.map((r) => JSON.stringify(r)).join('\n'),
    });
    return res.status;
  }

  async function query(base: string, table: string, q: unknown = {}): Promise<Row[]> {
    const res = await fetch(`${base}/tables/${table}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(q),
    });
    assert.equal(res.status, 200);
    return (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row)
      .filter((r) => r._next === undefined); // the cursor of a page a limit cut short
  }

  it('takes concurrent POSTs and queries through both, exactly, with chunks spread evenly', async () => {
    assert.equal((await e2e.cluster.api('PUT', '/tables/t')).status, 201);
    // The table created through one coordinator is known to the other.
    assert.equal(
      ((await fetch(`${url2}/tables`).then((r) => r.json())) as { tables: { name: string }[] }).tables[0].name,
      't',
    );
    const batches = Array.from({ length: 12 }, (_, i) => makeRows(1500, 100 + i, `b${i}-`));
    const urls = [e2e.cluster.url, url2];
    // POSTs alternate between the coordinators, all at once, with reads in between.
    const statuses = await Promise.all([
      ...batches.map((b, i) => post(urls[i % 2], 't', b)),
      ...urls.map((u) => query(u, 't', { aggregate: [{ op: 'count' }] }).then(() => 200)),
    ]);
    assert.ok(
      statuses.every((s) => s === 200),
      JSON.stringify(statuses),
    );

    const all = batches.flat();
    for (const u of urls)
      assert.deepEqual(
        lossAndDuplicates(all, await query(u, 't')),
        { lost: 0, duplicated: 0, wrong: 0 },
        `read through ${u}`,
      );
    const sorted = await query(url2, 't', { sort: [{ field: '_id', dir: 'desc' }], limit: 10, fields: ['_id'] });
    assert.deepEqual(
      sorted.map((r) => r._id),
      all
        .map((r) => r._id)
        .sort()
        .reverse()
        .slice(0, 10),
    );

    // 12 × 1500 rows / 250 = 72 chunks, 2 copies each; one global token keeps them even.
    const replicas = Object.values(await e2e.cluster.redis.hgetall(e2e.keys.chunks)).map(
      (v) => (JSON.parse(v) as { replicas: string[] }).replicas,
    );
    assert.equal(replicas.length, 72);
    const perWorker = new Map<string, number>();
    for (const r of replicas) for (const w of r) perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
    for (const [w, n] of perWorker) assert.ok(Math.abs(n - 48) <= 2, `${w} holds ${n} of 144 copies (even share: 48)`);
    assert.equal(
      Number(await e2e.cluster.redis.get(e2e.keys.token)),
      72,
      'one token draw per chunk, from both coordinators',
    );

    const keys = e2e.keys;
    const coordinators = await e2e.cluster.redis.zrange(keys.coordinators, 0, -1);
    assert.equal(coordinators.length, 2, `two coordinators registered: ${coordinators.join(', ')}`);
    for (const c of coordinators)
      assert.ok(
        (await e2e.cluster.redis.xlen(keys.coordReplies(c))) > 0,
        `${c} has its own reply stream with acks on it`,
      );
  });
});
