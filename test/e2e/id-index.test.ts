import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import type { Row } from '../support/driver';

const ndjson = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n');
const rowsOf = (prefix: string, n: number, extra: Record<string, unknown> = {}): Row[] =>
  Array.from({ length: n }, (_, i) => ({ _id: `${prefix}${i}`, i, ...extra }) as Row);

/**
 * `_id` is unique in a table across requests and workers. With R = 1 and four workers a
 * repeated `_id` in a later request lands, by the token, on a worker that does not hold the
 * first copy three times in four: only the table's id index in Redis can refuse it.
 */
describe('e2e: _id is unique across requests and workers (the id index)', function () {
  this.timeout(120_000);
  let url2: string;

  const e2e = clusterSuite({ workers: 4, replicas: 1, env: { DSTORE_CHUNK_ROWS: '100' } });

  const post = (rows: Row[], url?: string) => {
    if (url === undefined)
      return e2e.cluster.api<Record<string, unknown>>(
        'POST',
        '/tables/t/records',
        ndjson(rows),
        'application/x-ndjson',
      );
    return fetch(`${url}/tables/t/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: ndjson(rows),
    }).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as Record<string, unknown>,
    }));
  };
  /** Every stored row with this `_id` prefix, by `_id`, failing on any `_id` read twice. */
  async function stored(idPrefix: string): Promise<Map<string, Row>> {
    const rows = await e2e.cluster.query<Row>('t', {
      where: { _id: { $gte: idPrefix, $lt: `${idPrefix}\u{10FFFF}` } },
    });
    const out = new Map<string, Row>();
    for (const r of rows) {
      assert.ok(!out.has(r._id), `_id ${r._id} is stored twice`);
      out.set(r._id, r);
    }
    return out;
  }

  before(async () => {
    ({ url: url2 } = await e2e.cluster.spawnCoordinator('coordinator-2'));
    await e2e.cluster.api('PUT', '/tables/t');
    const r = await post(rowsOf('a', 1000));
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  it('records every _id a client gave in <prefix>:table:{<table>}:ids', async () => {
    assert.equal(await e2e.cluster.redis.hlen(e2e.keys.idIndex('t')), 1000);
  });

  it('refuses a repeated _id from an earlier request on every worker with a 409 naming the row, and stores nothing of that request', async () => {
    // Four one-row requests go to four different workers (the token moves one per chunk):
    // at least three of them are not the worker that holds a0.
    for (let k = 0; k < 4; k++) {
      const r = await post([{ _id: `new${k}`, i: -1 } as Row, { _id: 'a0', i: -1 } as Row]);
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.match(
        String(r.body.message),
        /^row 2: duplicate _id "a0": a row with this _id already exists in table t;/,
      );
      assert.deepEqual([r.body.row, r.body.field], [2, '_id']);
    }
    // A whole request sent again (a client's retry after a lost answer).
    const again = await post(rowsOf('a', 1000));
    assert.equal(again.status, 409);
    assert.equal((await stored('new')).size, 0, 'no row of a refused request is stored');
    const a = await stored('a');
    assert.equal(a.size, 1000);
    assert.equal(a.get('a0')!.i, 0, 'the stored row is the first one');
  });

  it('gives back the _ids of a request that failed and of rows deleted since', async () => {
    // Fails on its last line, after several chunks (and their ids) were placed.
    const failed = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      ndjson(rowsOf('b', 450)) + '\n{not json',
      'application/x-ndjson',
    );
    assert.equal(failed.status, 400);
    const retry = await post(rowsOf('b', 450));
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal((await stored('b')).size, 450);

    const del = await e2e.cluster.api('DELETE', '/tables/t/records', { where: { _id: { $in: ['a5', 'a6'] } } });
    assert.deepEqual(del.body, { deleted: 2 });
    const back = await post([{ _id: 'a5', i: 5, again: true } as Row]);
    assert.equal(back.status, 200, JSON.stringify(back.body));
    const a = await stored('a');
    assert.equal(a.size, 999);
    assert.equal(a.get('a5')!.again, true);
    assert.ok(!a.has('a6'));
  });

  it('stores each _id once when two coordinators are sent it at the same moment', async () => {
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, k) => [
        post([{ _id: `c${k}`, from: 1 } as Row]),
        post([{ _id: `c${k}`, from: 2 } as Row], url2),
      ]).flat(),
    );
    for (let k = 0; k < 12; k++) {
      const pair = [answers[2 * k].status, answers[2 * k + 1].status].sort();
      assert.deepEqual(pair, [200, 409], `c${k}: ${JSON.stringify([answers[2 * k].body, answers[2 * k + 1].body])}`);
    }
    const c = await stored('c');
    assert.equal(c.size, 12);
    for (let k = 0; k < 12; k++) {
      const won = answers[2 * k].status === 200 ? 1 : 2;
      assert.equal(c.get(`c${k}`)!.from, won, `c${k} holds the row of the request that got 200`);
    }
  });

  it('forgets the ids of a dropped table', async () => {
    assert.equal((await e2e.cluster.api('DELETE', '/tables/t')).status, 200);
    assert.equal(await e2e.cluster.redis.exists(e2e.keys.idIndex('t')), 0);
    await e2e.cluster.api('PUT', '/tables/t');
    assert.equal((await post(rowsOf('a', 10))).status, 200);
  });
});
