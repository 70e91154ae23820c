/**
 * Schema changes (issue 18, part 3): `PATCH /tables/:name` adds columns (stored rows read the
 * default, or go without) and drops them (gone from every row), on every worker (one that is
 * down applies it when it is back), while POSTs run: each is wholly checked against the old
 * schema or the new one. The reference is plain JS over the rows posted.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Dstore, DstoreError } from '../../client';
import { clusterSuite, type TestCluster } from '../support/cluster';
import type { Row } from '../support/driver';
import { projectRoot } from '../support/processes';

const CITIES = ['Oslo', 'Lima', 'Kyoto'];

function rows(n: number, prefix: string, extra: Record<string, unknown> = {}): Row[] {
  return Array.from({ length: n }, (_, i) => ({
    _id: `${prefix}${String(i).padStart(5, '0')}`,
    city: CITIES[i % 3],
    n: i,
    ...extra,
  }));
}

async function all(c: TestCluster): Promise<Map<string, Row>> {
  return new Map((await c.query<Row>('t', {})).map((r) => [r._id, r]));
}

describe('e2e: schema changes (3 workers, R = 2)', function () {
  this.timeout(240_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '200' } });
  let db: Dstore;
  const first = rows(1200, 'a');

  before(async () => {
    db = new Dstore(e2e.cluster.url);
    await db.createTable('t', { schema: 'city:string,n:integer,note:string' });
    await db.table('t').insert(first);
  });

  it('adds columns: stored rows read the default (or go without), later rows get it, filters and types follow', async () => {
    const c = e2e.cluster;
    const r = await db.alterTable('t', {
      addColumns: { score: { type: 'number', default: 1.5 }, tag: 'string' },
    });
    assert.deepEqual([r.added, r.dropped, r.rowsChanged], [['score', 'tag'], [], first.length]);
    assert.deepEqual(r.table.schema, { city: 'string', n: 'integer', note: 'string', score: 'number', tag: 'string' });
    const got = await all(c);
    assert.equal(got.size, first.length);
    for (const row of first) assert.deepEqual(got.get(row._id), { ...row, score: 1.5 }, row._id);
    // New rows: the default where score is missing, their own value where it is given.
    await db.table('t').insert([
      { _id: 'b1', city: 'Oslo', n: 1 },
      { _id: 'b2', city: 'Oslo', n: 2, score: 9, tag: 'x' },
    ]);
    assert.deepEqual(await db.table('t').get('b1'), { _id: 'b1', city: 'Oslo', n: 1, score: 1.5 });
    assert.equal(await db.table('t').count({ score: 1.5 }), first.length + 1);
    assert.equal(await db.table('t').count({ tag: 'x' }), 1);
    const wrong = await db
      .table('t')
      .insert([{ _id: 'b3', tag: 5 }])
      .catch((e: unknown) => e);
    assert.ok(wrong instanceof DstoreError && wrong.status === 400 && wrong.details.field === 'tag', String(wrong));
  });

  it('drops columns: gone from every row, refused in filters and new rows', async () => {
    const c = e2e.cluster;
    const r = await db.alterTable('t', { dropColumns: ['note', 'n'] });
    assert.deepEqual([r.dropped, r.rowsChanged], [['note', 'n'], first.length + 2]);
    const got = await all(c);
    for (const row of got.values()) {
      assert.equal('n' in row, false, row._id);
      assert.equal('note' in row, false, row._id);
    }
    const f = await c.api('POST', '/tables/t/query', { where: { n: 1 } });
    assert.equal(f.status, 400);
    const p = await c.api('POST', '/tables/t/records', [{ _id: 'c1', n: 1 }]);
    assert.equal(p.status, 400, JSON.stringify(p.body));
  });

  it('refuses bad changes with a message naming the field', async () => {
    const c = e2e.cluster;
    await db.createTable('loose');
    await db.table('t').indexes.create('by_city', ['city']);
    for (const [table, body, status, field, re] of [
      ['loose', { addColumns: { a: 'string' } }, 400, 'addColumns', /has no schema/],
      ['t', { dropColumns: ['_id'] }, 400, 'dropColumns._id', /cannot be dropped/],
      ['t', { dropColumns: ['nope'] }, 400, 'dropColumns.nope', /no column "nope"/],
      ['t', { dropColumns: ['city'] }, 409, 'dropColumns.city', /used by index by_city/],
      ['t', { addColumns: { city: 'string' } }, 409, 'addColumns.city', /already has a column/],
      [
        't',
        { addColumns: { x: { type: 'integer', default: 'a' } } },
        400,
        'addColumns.x.default',
        /must be an integer/,
      ],
      ['t', { addColumns: { x: 'decimal' } }, 400, 'addColumns.x', /use one of/],
      [
        't',
        { addColumns: { x: 'string:encrypted' } },
        400,
        'addColumns.x',
        /only be declared when the table is created/,
      ],
      ['t', { renameColumns: {} }, 400, 'renameColumns', /unknown key/],
      ['t', {}, 400, 'addColumns', /nothing to change/],
    ] as const) {
      const r = await c.api<{ field?: string; message: string }>('PATCH', `/tables/${table}`, body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.field, field, JSON.stringify(r.body));
      assert.match(r.body.message, re);
    }
    assert.equal((await c.api('PATCH', '/tables/none', { addColumns: { a: 'string' } })).status, 404);
  });

  it('POSTs running during a change are stored whole under the old schema (and changed with the rest) or refused', async () => {
    const c = e2e.cluster;
    const before = await db.table('t').count();
    const defaults = (await db.table('t').info()).defaults ?? {};
    const batches = Array.from({ length: 8 }, (_, k) => rows(400, `p${k}-`).map(({ n, ...r }) => (void n, r)));
    const posts = batches.map(async (b, k) => {
      await new Promise((r) => setTimeout(r, k * 15));
      return c.api('POST', '/tables/t/records', b);
    });
    await new Promise((r) => setTimeout(r, 40));
    const alter = await db.alterTable('t', { addColumns: { level: { type: 'integer', default: 7 } } });
    const answers = await Promise.all(posts);
    const stored = batches.filter((_, k) => answers[k].status === 200);
    for (const [k, a] of answers.entries())
      if (a.status !== 200) {
        assert.equal(a.status, 409, JSON.stringify(a.body));
        assert.match(
          String((a.body as { message: string }).message),
          /changed its columns while this request was stored/,
        );
        void k;
      }
    const got = await all(c);
    const want = stored.flat();
    assert.equal(
      got.size,
      before + want.length,
      `${stored.length} of 8 POSTs stored; the change changed ${alter.rowsChanged}`,
    );
    for (const row of want) assert.deepEqual(got.get(row._id), { ...defaults, ...row, level: 7 }, row._id);
    for (const row of got.values()) assert.equal(row.level, 7, row._id);
  });

  it('a worker that is down applies the change when it is back', async () => {
    const c = e2e.cluster;
    const w3 = c.workers.get('w3')!;
    w3.child.kill('SIGKILL');
    await w3.child.exited;
    await c.waitLive(['w1', 'w2']);
    const r = await db.alterTable('t', { addColumns: { late: { type: 'boolean', default: true } } });
    assert.deepEqual(r.pendingWorkers, ['w3']);
    c.startWorker('w3');
    await c.waitLive(['w1', 'w2', 'w3']);
    // Without w1, every chunk is read from w2 or w3: w3's copies must have the change too.
    const w1 = c.workers.get('w1')!;
    w1.child.kill('SIGKILL');
    await w1.child.exited;
    await c.waitLive(['w2', 'w3']);
    const got = await all(c);
    assert.equal(got.size, await db.table('t').count());
    for (const row of got.values()) assert.equal(row.late, true, row._id);
    c.startWorker('w1');
    await c.waitLive(['w1', 'w2', 'w3']);
  });

  it('dstore table alter', () => {
    const alter = (...args: string[]) =>
      spawnSync(
        process.execPath,
        [path.join(projectRoot(), 'dist', 'cli', 'main.js'), 'table', 'alter', 't', ...args, '--url', e2e.cluster.url],
        { encoding: 'utf8', env: { ...process.env, DSTORE_TOKEN: '' } },
      );
    const r = alter('--add', 'extra:string="x"', '--add', 'flag:boolean', '--drop', 'late');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^table t: added extra, flag, dropped late; \d+ stored rows changed\n$/);
    const bad = alter('--add', 'extra');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--add "extra": write column:type or column:type=default/);
  });
});
