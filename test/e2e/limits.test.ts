import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';

const LIMITS = {
  DSTORE_BODY_LIMIT_BYTES: '4096',
  DSTORE_JSON_BODY_LIMIT_BYTES: '2048',
  DSTORE_MAX_ROWS_PER_REQUEST: '50',
  DSTORE_MAX_RECORD_BYTES: '512',
  DSTORE_MAX_FIELDS: '5',
  DSTORE_MAX_DEPTH: '3',
  DSTORE_MAX_RESULT_ROWS: '10',
  DSTORE_QUERY_TIMEOUT_MS: '3000',
  // The timeout test stops the worker: it must stay live and the FETCH must keep waiting.
  DSTORE_WORKER_TIMEOUT_MS: '60000',
  DSTORE_FETCH_TIMEOUT_MS: '60000',
};

const ndjson = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('e2e: request limits answer 4xx naming the limit, row and field', function () {
  this.timeout(120_000);

  const e2e = clusterSuite({ workers: 1, replicas: 1, env: LIMITS });

  before(async () => {
    assert.equal((await e2e.cluster.api('PUT', '/tables/t')).status, 201);
    const ok = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      ndjson(Array.from({ length: 15 }, (_, i) => ({ _id: `k${i}`, n: i }))),
      'application/x-ndjson',
    );
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  async function post(rows: unknown[] | string, contentType = 'application/x-ndjson') {
    return e2e.cluster.api<Record<string, unknown>>(
      'POST',
      '/tables/t/records',
      typeof rows === 'string' ? rows : ndjson(rows),
      contentType,
    );
  }

  /** The table still holds only the 15 rows of `before`: a refused POST stored nothing. */
  async function unchanged(): Promise<void> {
    const r = await e2e.cluster.query('t', { aggregate: [{ op: 'count' }] });
    assert.deepEqual(r, [{ count: 15 }]);
  }

  it('413 over DSTORE_BODY_LIMIT_BYTES for a streamed POST', async () => {
    const rows = Array.from({ length: 40 }, (_, i) => ({ s: 'x'.repeat(150), i }));
    const r = await post(rows);
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.limit, 'DSTORE_BODY_LIMIT_BYTES');
    assert.match(String(r.body.message), /DSTORE_BODY_LIMIT_BYTES \(4096 bytes\)/);
    await unchanged();
  });

  it('413 over DSTORE_JSON_BODY_LIMIT_BYTES for a JSON body read whole', async () => {
    const r = await e2e.cluster.api<Record<string, unknown>>('POST', '/tables/t/query', {
      where: { s: 'y'.repeat(3000) },
    });
    assert.equal(r.status, 413);
    assert.deepEqual([r.body.error, r.body.limit], ['too_large', 'DSTORE_JSON_BODY_LIMIT_BYTES']);
  });

  it('413 over DSTORE_MAX_ROWS_PER_REQUEST, naming the first row too many', async () => {
    const r = await post(Array.from({ length: 51 }, (_, i) => ({ i })));
    assert.equal(r.status, 413);
    assert.deepEqual([r.body.error, r.body.limit, r.body.row], ['limit_exceeded', 'DSTORE_MAX_ROWS_PER_REQUEST', 51]);
    await unchanged();
  });

  it('413 over DSTORE_MAX_RECORD_BYTES, naming the row (NDJSON and JSON array)', async () => {
    const rows = [{ i: 1 }, { i: 2 }, { s: 'z'.repeat(600) }];
    for (const [body, ct] of [
      [ndjson(rows), 'application/x-ndjson'],
      [JSON.stringify(rows), 'application/json'],
    ]) {
      const r = await post(body, ct);
      assert.equal(r.status, 413, ct);
      assert.deepEqual([r.body.limit, r.body.row], ['DSTORE_MAX_RECORD_BYTES', 3], ct);
    }
    await unchanged();
  });

  it('400 over DSTORE_MAX_FIELDS, naming the row; also for an update set', async () => {
    const r = await post([{ a: 1 }, { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 }]);
    assert.equal(r.status, 400);
    assert.deepEqual([r.body.error, r.body.limit, r.body.row], ['limit_exceeded', 'DSTORE_MAX_FIELDS', 2]);
    const u = await e2e.cluster.api<Record<string, unknown>>('PATCH', '/tables/t/records', {
      where: {},
      set: { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 },
    });
    assert.equal(u.status, 400);
    assert.equal(u.body.limit, 'DSTORE_MAX_FIELDS');
    await unchanged();
  });

  it('400 over DSTORE_MAX_DEPTH, naming row and field', async () => {
    const ok = await post([{ _id: 'deep-ok', deep: [[{ x: 1 }]] }]);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    await e2e.cluster.api('DELETE', '/tables/t/records', { where: { _id: 'deep-ok' } });
    const r = await post([{ a: 1 }, { a: 2 }, { a: 3 }, { a: 4, deep: [[{ x: [1] }]] }]);
    assert.equal(r.status, 400);
    assert.deepEqual([r.body.limit, r.body.row, r.body.field], ['DSTORE_MAX_DEPTH', 4, 'deep']);
    await unchanged();
  });

  it('400 for field names that break the rules, naming row and field', async () => {
    for (const [name, re] of [
      ['$where', /reserved for filter operators/],
      ['a\u0000b', /control character U\+0000/],
      ['n'.repeat(300), /at most 256/],
    ] as const) {
      const r = await post([{ ok: 1 }, { [name]: 1 }]);
      assert.equal(r.status, 400, name);
      assert.equal(r.body.row, 2);
      assert.equal(r.body.field, name.slice(0, 256));
      assert.match(String(r.body.message), re);
    }
    await unchanged();
  });

  it('400 for table names that break the rules', async () => {
    for (const name of ['has space', 'a:b', '-x', 'x'.repeat(65), '%F0%9F%98%80']) {
      const r = await e2e.cluster.api<Record<string, unknown>>(
        'PUT',
        `/tables/${name.includes('%') ? name : encodeURIComponent(name)}`,
      );
      assert.equal(r.status, 400, name);
      assert.equal(r.body.field, 'name');
      assert.match(String(r.body.message), /invalid table/);
    }
  });

  it('400 over DSTORE_MAX_RESULT_ROWS: a larger limit, or more rows than that without one', async () => {
    const big = await e2e.cluster.api<Record<string, unknown>>('POST', '/tables/t/query', { limit: 11 });
    assert.equal(big.status, 400);
    assert.deepEqual([big.body.limit, big.body.field], ['DSTORE_MAX_RESULT_ROWS', 'limit']);
    const all = await e2e.cluster.api<Record<string, unknown>>('POST', '/tables/t/query', {});
    assert.equal(all.status, 400);
    assert.equal(all.body.limit, 'DSTORE_MAX_RESULT_ROWS');
    assert.equal((await e2e.cluster.query('t', { limit: 10 })).length, 10);
    assert.equal((await e2e.cluster.query('t', { where: { n: { $lt: 10 } } })).length, 10);
  });

  it('504 over DSTORE_QUERY_TIMEOUT_MS when a worker does not answer', async () => {
    const w = [...e2e.cluster.workers.values()][0];
    w.child.kill('SIGSTOP');
    try {
      const r = await e2e.cluster.api<Record<string, unknown>>('POST', '/tables/t/query', { limit: 5 });
      assert.equal(r.status, 504);
      assert.deepEqual([r.body.error, r.body.limit], ['limit_exceeded', 'DSTORE_QUERY_TIMEOUT_MS']);
    } finally {
      w.child.kill('SIGCONT');
    }
    assert.equal((await e2e.cluster.query('t', { limit: 5 })).length, 5);
  });
});
