/**
 * Generated `_id`s name their chunk (issue 16): they need no entry in the id index, so a
 * table whose ids are generated costs Redis almost nothing per row, and they stay unique,
 * findable by lookup, and refused when posted again.
 */
import { strict as assert } from 'node:assert';
import type { ReadExplain } from '../../coordinator/fetch-merger';
import { GENERATED_ID } from '../../coordinator/id-index';
import { clusterSuite } from '../support/cluster';

type Row = { _id: string; n: number; pad: string };

describe('e2e: generated _ids', function () {
  this.timeout(120_000);
  // Small chunks cut by bytes and by rows, so rows move to the next chunk at byte cuts.
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '300', DSTORE_CHUNK_BYTES: '8192' } });
  const N = 5000;
  let rows: Row[];

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/g');
    const body = Array.from({ length: N }, (_, i) => JSON.stringify({ n: i, pad: 'p'.repeat(i % 97) })).join('\n');
    const r = await e2e.cluster.api<{ inserted: number; chunks: number }>(
      'POST',
      '/tables/g/records',
      body,
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.chunks > N / 300, `${r.body.chunks} chunks: some cut by bytes`);
    rows = await e2e.cluster.query<Row>('g');
  });

  it('are unique, of the generated form, and each names the chunk that holds it', async () => {
    assert.equal(rows.length, N);
    assert.equal(new Set(rows.map((r) => r._id)).size, N);
    for (const r of rows) assert.match(r._id, GENERATED_ID);
    const chunks = new Set(await e2e.cluster.redis.smembers(e2e.keys.tableChunks('g')));
    for (const r of rows) assert.ok(chunks.has(r._id.slice(0, 26)), `${r._id} names no chunk of the table`);
    // Every row found by lookup, through the one chunk its id names.
    for (const r of rows.filter((_, i) => i % 250 === 0)) {
      const [plan] = await e2e.cluster.query<{ explain: ReadExplain }>('g', { where: { _id: r._id }, explain: true });
      assert.deepEqual(
        plan.explain.workers.flatMap((w) => w.chunks),
        [r._id.slice(0, 26)],
      );
      assert.deepEqual(await e2e.cluster.query('g', { where: { _id: r._id } }), [r]);
    }
  });

  it('cost Redis no id-index entry: a few bytes of Redis per row', async () => {
    const redis = e2e.cluster.redis;
    assert.equal(await redis.exists(e2e.keys.idIndex('g')), 0, 'no id index at all');
    const ids = await redis.smembers(e2e.keys.tableChunks('g'));
    let bytes = Number(await redis.memory('USAGE', e2e.keys.tableChunks('g')));
    for (const c of ids) bytes += c.length + (await redis.hget(e2e.keys.chunks, c))!.length + 40;
    for (const w of e2e.cluster.workers.keys())
      bytes += Number((await redis.memory('USAGE', e2e.keys.workerChunks(w))) ?? 0);
    const perRow = bytes / N;
    assert.ok(perRow <= 10, `${perRow.toFixed(1)} bytes of Redis per row`);
  });

  it('refuses a generated _id posted again (an exported row) with a 409 naming the row, and stores nothing', async () => {
    const again = [{ _id: 'fresh-1', n: -1 }, rows[1234]];
    const r = await e2e.cluster.api<{ message: string; row: number }>(
      'POST',
      '/tables/g/records',
      again.map((x) => JSON.stringify(x)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.row, 2);
    assert.match(r.body.message, /duplicate _id .* already exists/);
    assert.deepEqual(await e2e.cluster.query('g', { where: { _id: 'fresh-1' } }), []);
  });

  it('takes a generated-form _id again once its row was deleted, and finds it in its new chunk', async () => {
    const old = rows[77];
    assert.equal((await e2e.cluster.api('DELETE', '/tables/g/records', { where: { _id: old._id } })).status, 200);
    const back = { ...old, n: 777777 };
    const r = await e2e.cluster.api('POST', '/tables/g/records', JSON.stringify(back), 'application/x-ndjson');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(await e2e.cluster.query('g', { where: { _id: old._id } }), [back]);
    const [count] = await e2e.cluster.query<{ count: number }>('g', { aggregate: [{ op: 'count' }] });
    assert.equal(count.count, N);
  });
});
