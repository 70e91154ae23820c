/**
 * Upsert (issue 18, part 2): `POST /tables/:name/records?onConflict=replace|merge` writes rows
 * whether or not their `_id` is stored, all or nothing, in the table's write order on every
 * replica. The reference is a model of acknowledged writes in plain JS; replicas are compared
 * straight from their SQLite files.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dstore, DstoreError } from '../../client';
import { build, UpsertMessage } from '../../common/messages';
import { clusterSuite, type TestCluster } from '../support/cluster';
import { makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { projectRoot, tempDir } from '../support/processes';
import { shardChunks } from '../support/shards';
import { streamedPost } from '../support/streamed-post';
import { waitFor } from '../support/wait';

type Model = Map<string, Row>;

async function readAll(c: TestCluster, table = 't'): Promise<Row[]> {
  return c.query<Row>(table, {});
}

/** Lost, duplicated and wrong rows of a read against the model; all must be 0. */
function compare(got: Row[], model: Model): { lost: number; duplicated: number; wrong: number } {
  const seen = new Map<string, number>();
  let wrong = 0;
  for (const r of got) {
    seen.set(r._id, (seen.get(r._id) ?? 0) + 1);
    const want = model.get(r._id);
    if (!want || JSON.stringify(sortKeys(r)) !== JSON.stringify(sortKeys(want))) wrong++;
  }
  let lost = 0;
  for (const id of model.keys()) if (!seen.has(id)) lost++;
  const duplicated = [...seen.values()].filter((n) => n > 1).length;
  return { lost, duplicated, wrong };
}

function sortKeys(r: Row): Row {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1))) as Row;
}

async function post(c: TestCluster, table: string, rows: unknown[], onConflict?: string) {
  const q = onConflict ? `?onConflict=${onConflict}` : '';
  return c.api<Record<string, unknown>>(
    'POST',
    `/tables/${table}/records${q}`,
    rows.map((x) => JSON.stringify(x)).join('\n'),
    'application/x-ndjson',
  );
}

/** Every chunk held by two or more workers holds the same rows on each (read from the files). */
function assertReplicasAgree(c: TestCluster, table = 't'): number {
  const byChunk = new Map<string, Map<string, string>>();
  for (const w of c.workers.values()) {
    for (const [chunk, rows] of shardChunks(w.dataDir, table)) {
      const m = byChunk.get(chunk) ?? new Map<string, string>();
      m.set(w.id, rows);
      byChunk.set(chunk, m);
    }
  }
  let compared = 0;
  for (const [chunk, copies] of byChunk) {
    const distinct = new Set(copies.values());
    assert.equal(distinct.size, 1, `chunk ${chunk}: replicas ${[...copies.keys()].join(', ')} differ`);
    if (copies.size > 1) compared++;
  }
  return compared;
}

describe('e2e: upsert (?onConflict=replace|merge), 3 workers, R = 2', function () {
  this.timeout(240_000);
  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '50', DSTORE_SWEEP_MS: '300', DSTORE_COORDINATOR_TIMEOUT_MS: '1500' },
  });
  const model: Model = new Map();
  let db: Dstore;

  before(async () => {
    db = new Dstore(e2e.cluster.url);
    await db.createTable('t');
    const rows = makeRows(600, 7, 'a');
    await db.table('t').insert(rows);
    for (const r of rows) model.set(r._id, r);
  });

  it('refuses a stored _id by default, and an unknown mode, naming the field', async () => {
    const c = e2e.cluster;
    const dup = await post(c, 't', [{ _id: 'new-1' }, { _id: 'a0000003', city: 'X' }]);
    assert.equal(dup.status, 409, JSON.stringify(dup.body));
    assert.equal(dup.body.field, '_id');
    assert.match(String(dup.body.message), /onConflict=replace or merge/);
    const bad = await post(c, 't', [{ _id: 'new-1' }], 'upsert');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'onConflict');
    assert.match(String(bad.body.message), /error, replace, merge/);
    assert.deepEqual(compare(await readAll(c), model), { lost: 0, duplicated: 0, wrong: 0 });
  });

  it('replace: stored rows are swapped whole, new rows inserted, counted apart', async () => {
    const c = e2e.cluster;
    // Existing ids spread over many chunks, mixed with new ones, some rows without fields they had.
    const rows: Row[] = [];
    for (let i = 0; i < 600; i += 3) rows.push({ _id: `a${String(i).padStart(7, '0')}`, city: 'Replaced', v: i });
    for (let i = 0; i < 70; i++) rows.push({ _id: `b${i}`, city: 'New', v: -i });
    const r = await post(c, 't', rows, 'replace');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.inserted, r.body.replaced, r.body.merged], [70, 200, undefined]);
    for (const row of rows) model.set(row._id, row);
    assert.deepEqual(compare(await readAll(c), model), { lost: 0, duplicated: 0, wrong: 0 });
    assert.ok(assertReplicasAgree(c) > 0);
    // The rows are found by _id (the id index still names the chunk holding them).
    assert.deepEqual(await db.table('t').get('a0000003'), { _id: 'a0000003', city: 'Replaced', v: 3 });
  });

  it('merge: the given top-level fields are set, the others kept; new rows inserted as given', async () => {
    const c = e2e.cluster;
    const rows: Row[] = [];
    for (let i = 1; i < 600; i += 4) rows.push({ _id: `a${String(i).padStart(7, '0')}`, n: -i, meta: { m: 1 } });
    for (let i = 0; i < 30; i++) rows.push({ _id: `c${i}`, n: i });
    const r = await db.table('t').upsert(rows, { mode: 'merge' });
    assert.deepEqual([r.inserted, r.merged, r.replaced], [30, 150, undefined]);
    for (const row of rows) model.set(row._id, { ...(model.get(row._id) ?? {}), ...row } as Row);
    assert.deepEqual(compare(await readAll(c), model), { lost: 0, duplicated: 0, wrong: 0 });
    assertReplicasAgree(c);
  });

  it('is all or nothing: a bad row late in the request leaves stored rows as they were and adds none', async () => {
    const c = e2e.cluster;
    const rows: unknown[] = [];
    for (let i = 2; i < 600; i += 5) rows.push({ _id: `a${String(i).padStart(7, '0')}`, city: 'Never' });
    for (let i = 0; i < 100; i++) rows.push({ _id: `d${i}`, city: 'Never' });
    rows.push([1, 2]);
    for (const mode of ['replace', 'merge']) {
      const r = await post(c, 't', rows, mode);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.row, rows.length);
    }
    assert.deepEqual(compare(await readAll(c), model), { lost: 0, duplicated: 0, wrong: 0 });
    // The aborted upserts left no mark behind: a plain POST of those ids is a plain 409 / insert.
    const again = await post(c, 't', [{ _id: 'd0', city: 'Now' }]);
    assert.equal(again.status, 200);
    model.set('d0', { _id: 'd0', city: 'Now' });
    assert.equal(await c.redis.hlen(e2e.keys.upserting('t')), 0);
  });

  it('applies in the write order on every replica, racing UPDATEs, DELETEs and other upserts', async () => {
    const c = e2e.cluster;
    // Each round: upserts (merge and replace) of the same ids, an UPDATE of the same field and a
    // DELETE of some of them, all at once. The outcome depends on the order; replicas must agree.
    for (let round = 0; round < 4; round++) {
      const ids = Array.from({ length: 40 }, (_, i) => `a${String(round * 40 + i).padStart(7, '0')}`);
      const answers = await Promise.all([
        post(
          c,
          't',
          ids.map((id) => ({ _id: id, x: `merge-${round}` })),
          'merge',
        ),
        post(
          c,
          't',
          ids.slice(0, 20).map((id) => ({ _id: id, x: `replace-${round}` })),
          'replace',
        ),
        c.api('PATCH', '/tables/t/records', { where: { _id: { $in: ids } }, set: { x: `update-${round}` } }),
        c.api('DELETE', '/tables/t/records', { where: { _id: { $in: ids.slice(30) } } }),
      ]);
      for (const a of answers) assert.ok([200, 409].includes(a.status), JSON.stringify(a.body));
      const rows = await readAll(c);
      const counts = new Map<string, number>();
      for (const r of rows) counts.set(r._id, (counts.get(r._id) ?? 0) + 1);
      assert.deepEqual(
        [...counts].filter(([, n]) => n > 1),
        [],
        'no _id is stored twice',
      );
      assertReplicasAgree(c);
    }
  });

  it('a row deleted while an upsert is open is stored again by it, never twice', async () => {
    const c = e2e.cluster;
    // Many rounds of: upsert (replace) of a row, a DELETE of it and a plain POST of the same
    // _id, at once. Whatever the order, the _id is stored at most once and replicas agree.
    for (let i = 0; i < 12; i++) {
      const id = `e${i}`;
      assert.equal((await post(c, 't', [{ _id: id, v: 'first' }])).status, 200);
      const [up, , plain] = await Promise.all([
        post(c, 't', [{ _id: id, v: 'upsert' }, ...makeRows(120, i, `f${i}-`)], 'replace'),
        c.api('DELETE', '/tables/t/records', { where: { _id: id } }),
        post(c, 't', [{ _id: id, v: 'plain' }]),
      ]);
      assert.ok([200, 409, 503].includes(up.status), JSON.stringify(up.body));
      assert.ok([200, 409, 503].includes(plain.status), JSON.stringify(plain.body));
      const got = await c.query<Row>('t', { where: { _id: id } });
      assert.ok(got.length <= 1, `${id} stored ${got.length} times: ${JSON.stringify(got)}`);
      if (up.status === 200 && plain.status === 200) assert.equal(got.length, 1);
    }
    assertReplicasAgree(c);
  });

  it('while an upsert is open: its row deleted is stored again by it, and another POST of the _id waits (409)', async () => {
    const c = e2e.cluster;
    assert.equal((await post(c, 't', [{ _id: 'g1', v: 'first' }])).status, 200);
    // A streamed upsert held open after its first chunk (g1 and 49 new rows) was placed.
    const { push, answer: upsert } = streamedPost(c.url, 't', 'replace');
    push(JSON.stringify({ _id: 'g1', v: 'upsert' }) + '\n');
    for (let i = 0; i < 49; i++) push(JSON.stringify({ _id: `g-new-${i}` }) + '\n');
    const upserting = e2e.keys.upserting('t');
    for (let i = 0; (await c.redis.hget(upserting, 'g1')) === null; i++) {
      assert.ok(i < 200, 'the upsert marked g1');
      await new Promise((r) => setTimeout(r, 25));
    }
    const del = await c.api<{ deleted: number }>('DELETE', '/tables/t/records', { where: { _id: 'g1' } });
    assert.deepEqual([del.status, del.body.deleted], [200, 1]);
    const plain = await post(c, 't', [{ _id: 'g1', v: 'plain' }]);
    assert.equal(plain.status, 409, JSON.stringify(plain.body));
    assert.match(String(plain.body.message), /in progress/);
    push(JSON.stringify({ _id: 'g-last' }) + '\n');
    push(null);
    const res = await upsert;
    const answer = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200, JSON.stringify(answer));
    assert.deepEqual([answer.inserted, answer.replaced], [50, 1]);
    // In the write order the DELETE came first, then the upsert: the row is there, once.
    assert.deepEqual(await c.query<Row>('t', { where: { _id: 'g1' } }), [{ _id: 'g1', v: 'upsert' }]);
    assert.equal(await c.redis.hget(upserting, 'g1'), null, 'the mark is gone');
    assertReplicasAgree(c);
  });

  it('clean-up finishes the upsert of a coordinator that died while committing, and drops one that had not', async () => {
    const c = e2e.cluster;
    await post(c, 't', [
      { _id: 'h1', v: 1, keep: 'k' },
      { _id: 'h2', v: 1, keep: 'k' },
    ]);
    // What a coordinator leaves when it dies after staging (and, for the first, deciding to
    // commit): the open record, the staged rows and the marks; no chunk of new rows.
    for (const [id, post, committing] of [
      ['h1', 'ghostupsert1', true],
      ['h2', 'ghostupsert2', false],
    ] as const) {
      const holder = await c.redis.hget(e2e.keys.idIndex('t'), id);
      assert.ok(holder);
      const batch = { op: `op-${post}`, mode: 'merge', chunks: [holder], ids: [id], rows: [`{"_id":"${id}","v":2}`] };
      await c.redis.rpush(e2e.keys.postUpserts(post), JSON.stringify(batch));
      await c.redis.hset(e2e.keys.upserting('t'), id, post);
      await c.redis.hset(
        e2e.keys.openPosts,
        post,
        JSON.stringify({ coordinator: 'c-dead', table: 't', at: Date.now(), ...(committing ? { committing } : {}) }),
      );
    }
    for (const post of ['ghostupsert1', 'ghostupsert2'])
      await waitFor(async () => (await c.redis.hexists(e2e.keys.openPosts, post)) === 0, {
        what: `clean-up to finish ${post}`,
        timeoutMs: 30_000,
      });
    const got = await c.query<Row>('t', { where: { _id: { $in: ['h1', 'h2'] } }, sort: [{ field: '_id' }] });
    assert.deepEqual(got, [
      { _id: 'h1', v: 2, keep: 'k' },
      { _id: 'h2', v: 1, keep: 'k' },
    ]);
    assert.deepEqual(await c.redis.hmget(e2e.keys.upserting('t'), 'h1', 'h2'), [null, null]);
    assert.equal(await c.redis.exists(e2e.keys.postUpserts('ghostupsert1'), e2e.keys.postUpserts('ghostupsert2')), 0);
    assertReplicasAgree(c);
  });

  it('an upsert held open across a table drop and create changes nothing of the new table', async () => {
    const c = e2e.cluster;
    await db.createTable('dropped');
    assert.equal((await post(c, 'dropped', [{ _id: 'x1', v: 'old' }])).status, 200);
    const { push, answer } = streamedPost(c.url, 'dropped', 'replace');
    push(JSON.stringify({ _id: 'x1', v: 'upsert' }) + '\n');
    for (let i = 0; i < 49; i++) push(JSON.stringify({ _id: `x-new-${i}` }) + '\n');
    for (let i = 0; (await c.redis.hget(e2e.keys.upserting('dropped'), 'x1')) === null; i++) {
      assert.ok(i < 200, 'the upsert marked x1');
      await new Promise((r) => setTimeout(r, 25));
    }
    await db.dropTable('dropped');
    await db.createTable('dropped');
    assert.equal((await post(c, 'dropped', [{ _id: 'x1', v: 'new table' }])).status, 200);
    push(null);
    await (await answer).text();
    // Whatever the upsert answered, the new table's x1 is its own.
    const got = await c.query<Row>('dropped', { where: { _id: 'x1' } });
    assert.deepEqual(got, [{ _id: 'x1', v: 'new table' }]);
    assertReplicasAgree(c, 'dropped');
  });

  it('a commit left half sent is sent again by the next writer of the table, before its own op', async () => {
    const c = e2e.cluster;
    assert.equal((await post(c, 't', [{ _id: 'p1', v: 1 }])).status, 200);
    const holder = (await c.redis.hget(e2e.keys.idIndex('t'), 'p1'))!;
    const meta = JSON.parse((await c.redis.hget(e2e.keys.chunks, holder))!) as { replicas: string[] };
    // What a coordinator leaves when it stops after the UPSERT reached one replica's stream:
    // the table's pending record, the staged batch, the open record (its coordinator alive).
    const ghost = 'halfsent1';
    const batch = { op: `op-${ghost}`, mode: 'merge', chunks: [holder], ids: ['p1'], rows: ['{"_id":"p1","m":2}'] };
    const live = (await c.api<{ coordinator: string }>('GET', '/healthz')).body.coordinator;
    await c.redis.rpush(e2e.keys.postUpserts(ghost), JSON.stringify(batch));
    await c.redis.hset(e2e.keys.upserting('t'), 'p1', ghost);
    await c.redis.hset(
      e2e.keys.openPosts,
      ghost,
      JSON.stringify({ coordinator: live, table: 't', at: Date.now(), committing: Date.now() }),
    );
    await c.redis.set(e2e.keys.orderPending('t'), ghost);
    const msg = build(UpsertMessage, {
      ...batch,
      mode: 'merge',
      post: ghost,
      table: 't',
      replyTo: e2e.keys.coordReplies('test'),
    });
    await c.redis.xadd(e2e.keys.workerOps(meta.replicas[0]), '*', ...msg.toArgs());
    // The next write of the table: it must come after the merge on every replica.
    const u = await c.api('PATCH', '/tables/t/records', { where: { _id: 'p1' }, set: { v: 9 } });
    assert.equal(u.status, 200, JSON.stringify(u.body));
    assert.equal(await c.redis.exists(e2e.keys.orderPending('t')), 0, 'the pending record is done');
    assert.deepEqual(await c.query<Row>('t', { where: { _id: 'p1' } }), [{ _id: 'p1', v: 9, m: 2 }]);
    assertReplicasAgree(c);
    await c.redis.hdel(e2e.keys.openPosts, ghost);
    await c.redis.hdel(e2e.keys.upserting('t'), 'p1');
  });

  it('typed tables: merge keeps stored columns and gives new rows the defaults; types are checked', async () => {
    const c = e2e.cluster;
    await db.createTable('typed', { schema: 'city:string,n:integer' });
    await db.table('typed').insert([
      { _id: 'k1', city: 'Oslo', n: 1 },
      { _id: 'k2', city: 'Lima', n: 2 },
    ]);
    await db.alterTable('typed', { addColumns: { score: { type: 'number', default: 0.5 } } });
    const r = await db.table('typed').upsert(
      [
        { _id: 'k1', n: 10 },
        { _id: 'k3', city: 'Kyoto' },
      ],
      { mode: 'merge' },
    );
    assert.deepEqual([r.inserted, r.merged], [1, 1]);
    const got = Object.fromEntries((await readAll(c, 'typed')).map((x) => [x._id, x]));
    assert.deepEqual(got, {
      k1: { _id: 'k1', city: 'Oslo', n: 10, score: 0.5 },
      k2: { _id: 'k2', city: 'Lima', n: 2, score: 0.5 },
      k3: { _id: 'k3', city: 'Kyoto', score: 0.5 },
    });
    const wrong = await db
      .table('typed')
      .upsert([{ _id: 'k1', n: 'ten' }], { mode: 'merge' })
      .catch((e: unknown) => e);
    assert.ok(wrong instanceof DstoreError && wrong.status === 400 && wrong.details.field === 'n', String(wrong));
  });

  it('a worker that is down applies the upsert when it is back', async () => {
    const c = e2e.cluster;
    const w3 = c.workers.get('w3')!;
    await w3.child.stop();
    await c.waitLive(['w1', 'w2']);
    const rows: Row[] = [];
    for (let i = 0; i < 600; i += 7) rows.push({ _id: `a${String(i).padStart(7, '0')}`, down: true });
    const r = await db.table('t').upsert(rows, { mode: 'merge' });
    // Rows that were deleted above are inserted again (merge of the given fields).
    assert.equal(r.inserted + (r.merged ?? 0), rows.length);
    for (const row of rows) model.set(row._id, { ...(model.get(row._id) ?? {}), ...row } as Row);
    c.startWorker('w3');
    await c.waitLive(['w1', 'w2', 'w3']);
    // A read now waits for w3 to catch up; then with w1 stopped, chunks come from w2 and w3.
    await readAll(c);
    assertReplicasAgree(c);
    const w1 = c.workers.get('w1')!;
    await w1.child.stop();
    await c.waitLive(['w2', 'w3']);
    const got = await readAll(c);
    for (const row of rows) {
      const x = got.find((g) => g._id === row._id);
      assert.equal(x?.down, true, row._id);
    }
    c.startWorker('w1');
    await c.waitLive(['w1', 'w2', 'w3']);
  });

  it('the CLI posts with --on-conflict and says what it replaced', () => {
    const file = path.join(tempDir('upsert-cli'), 'rows.ndjson');
    fs.writeFileSync(file, ['{"_id":"a0000000","city":"Cli"}', '{"_id":"cli-new","city":"Cli"}'].join('\n') + '\n');
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.join(projectRoot(), 'dist/cli/main.js'), ...args, '--url', e2e.cluster.url], {
        encoding: 'utf8',
      });
    const plain = cli(['post', 't', file]);
    assert.notEqual(plain.status, 0);
    assert.match(plain.stderr, /--on-conflict|onConflict/);
    const r = cli(['post', 't', file, '--on-conflict', 'replace']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /inserted 1 row, replaced 1 row in/);
  });
});
