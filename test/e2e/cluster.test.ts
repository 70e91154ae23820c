import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { matchesFilter } from '../../common/filter';
import { compareSql, toSqlValue } from '../../common/sqlite-order';
import { clusterSuite } from '../support/cluster';
import { canonical, lossAndDuplicates, makeRows, multiset } from '../support/data';
import type { Row } from '../support/driver';
import { projectRoot, spawnNode, tempDir } from '../support/processes';

const CLI = () => path.join(projectRoot(), 'dist', 'cli', 'main.js');

function get(row: Record<string, unknown>, field: string): unknown {
  let v: unknown = row;
  for (const seg of field.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
  return v;
}

/** Runs the dstore CLI to completion. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const child = spawnNode(`cli-${args[0]}`, 'dist/cli/main.js', args, { LOG_FORMAT: 'json', ...env });
  const exit = await child.exited;
  return { code: exit.code, out: fs.readFileSync(child.logFile, 'utf8') };
}

describe('e2e: coordinator + 3 workers (R = 2) as child processes', function () {
  this.timeout(180_000);
  const rows = makeRows(50_000, 99);
  let file: string;

  const e2e = clusterSuite({ workers: 3, replicas: 2 });

  before(async () => {
    file = path.join(tempDir('e2e-data'), 'rows.ndjson');
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  });

  it('loads 50,000 records from an NDJSON file through the CLI and returns exactly them', async () => {
    assert.equal((await e2e.cluster.api('PUT', '/tables/events')).status, 201);
    const r = await cli(['post', 'events', file, '--url', e2e.cluster.url]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /inserted 50000 rows in 50 chunks/);
    const got = await e2e.cluster.query<Row>('events');
    assert.equal(got.length, 50_000);
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
  });

  it('spreads chunks evenly: each worker holds 2/3 of them', async () => {
    const { body } = await e2e.cluster.api<{ workers: { id: string; status: { chunks: number; rows: number } }[] }>(
      'GET',
      '/workers',
    );
    assert.equal(body.workers.length, 3);
    const total = body.workers.reduce((n, w) => n + w.status.chunks, 0);
    assert.equal(total, 100, 'R = 2 copies of 50 chunks');
    for (const w of body.workers)
      assert.ok(Math.abs(w.status.chunks - 100 / 3) <= 1, `${w.id} holds ${w.status.chunks} chunks`);
  });

  const filters = [
    { city: 'Oslo' },
    { n: { $gte: 500, $lt: 510 } },
    { $or: [{ ok: true, 'meta.depth': 0 }, { score: { $exists: false } }] },
  ];
  for (const where of filters) {
    it(`filters ${JSON.stringify(where)} exactly as the same filter in plain JS`, async () => {
      const got = await e2e.cluster.query('events', { where });
      const want = rows.filter((r) => matchesFilter(where, r));
      assert.ok(want.length > 0);
      assert.deepEqual(multiset(got), multiset(want));
    });
  }

  it('sorts across workers (k-way merge) and limits after the merge', async () => {
    const got = await e2e.cluster.query<Row>('events', {
      sort: [
        { field: 'score', dir: 'desc' },
        { field: 'city', dir: 'asc' },
      ],
      limit: 500,
      fields: ['_id', 'score', 'city'],
    });
    const want = [...rows]
      .sort(
        (a, b) =>
          -compareSql(toSqlValue(a.score), toSqlValue(b.score)) ||
          compareSql(toSqlValue(a.city), toSqlValue(b.city)) ||
          compareSql(a._id, b._id),
      )
      .slice(0, 500)
      .map((r) => r._id);
    assert.deepEqual(
      got.map((r) => r._id),
      want,
    );
  });

  it('computes a group-by aggregate equal to plain JS over the input', async () => {
    const got = await e2e.cluster.query<Record<string, number | string>>('events', {
      where: { ok: true },
      groupBy: ['city'],
      aggregate: [
        { op: 'count' },
        { op: 'sum', field: 'n' },
        { op: 'avg', field: 'score', as: 'mean' },
        { op: 'min', field: 'score' },
        { op: 'max', field: 'meta.depth' },
      ],
      sort: [{ field: 'count', dir: 'desc' }],
    });
    const sel = rows.filter((r) => r.ok === true);
    const cities = [...new Set(sel.map((r) => r.city as string))];
    assert.equal(got.length, cities.length);
    for (let i = 1; i < got.length; i++)
      assert.ok((got[i - 1].count as number) >= (got[i].count as number), 'sorted by count desc');
    for (const c of cities) {
      const g = sel.filter((r) => r.city === c);
      const nums = (f: string) => g.map((r) => get(r, f)).filter((v): v is number => typeof v === 'number');
      const row = got.find((x) => x.city === c)!;
      assert.equal(row.count, g.length);
      assert.equal(
        row.sum_n,
        nums('n').reduce((s, v) => s + v, 0),
      );
      const scores = nums('score');
      assert.ok(Math.abs((row.mean as number) - scores.reduce((s, v) => s + v, 0) / scores.length) < 1e-9);
      assert.equal(row.min_score, Math.min(...scores));
      assert.equal(row['max_meta.depth'], Math.max(...nums('meta.depth')));
    }
  });

  it('counts an ungrouped aggregate once per row, not once per replica', async () => {
    assert.deepEqual(await e2e.cluster.query('events', { aggregate: [{ op: 'count' }] }), [{ count: 50_000 }]);
  });

  it('answers GET /records with query-string parameters, for curl', async () => {
    const r = await e2e.cluster.api<Row[]>(
      'GET',
      `/tables/events/records?where=${encodeURIComponent('{"city":"Lima"}')}&fields=_id,n&sort=n:desc,_id&limit=5`,
    );
    assert.equal(r.status, 200);
    const want = rows
      .filter((x) => x.city === 'Lima')
      .sort((a, b) => -compareSql(toSqlValue(a.n), toSqlValue(b.n)) || compareSql(a._id, b._id))
      .slice(0, 5)
      .map((x) => ({ _id: x._id, n: x.n }));
    // More rows follow the five: the answer ends with the cursor to the next page.
    assert.deepEqual(r.body.slice(0, -1), want);
    assert.match(String((r.body[r.body.length - 1] as { _next?: string })._next), /^[\w-]+\.[\w-]+$/);
  });

  it('applies UPDATE and DELETE everywhere and counts each row once', async () => {
    const oslo = rows.filter((r) => r.city === 'Oslo').length;
    const up = await e2e.cluster.api('PATCH', '/tables/events/records', {
      where: { city: 'Oslo' },
      set: { flag: 'x' },
    });
    assert.deepEqual(up, { status: 200, body: { updated: oslo } });
    assert.equal((await e2e.cluster.query('events', { where: { flag: 'x' } })).length, oslo);
    const doomed = rows.filter((r) => typeof r.n === 'number' && r.n >= 950).length;
    const del = await e2e.cluster.api('DELETE', '/tables/events/records', { where: { n: { $gte: 950 } } });
    assert.deepEqual(del, { status: 200, body: { deleted: doomed } });
    const expected = rows
      .filter((r) => !(typeof r.n === 'number' && r.n >= 950))
      .map((r) => (r.city === 'Oslo' ? { ...r, flag: 'x' } : r));
    assert.deepEqual(multiset(await e2e.cluster.query('events')), multiset(expected));
  });

  describe('bad input gets a 4xx naming the problem and stores nothing', () => {
    let before: number;
    beforeEach(async () => {
      before = (await e2e.cluster.query<{ count: number }>('events', { aggregate: [{ op: 'count' }] }))[0].count;
    });
    afterEach(async () => {
      const after = (await e2e.cluster.query<{ count: number }>('events', { aggregate: [{ op: 'count' }] }))[0].count;
      assert.equal(after, before, 'row count unchanged');
    });

    it('an invalid JSON line after several chunks were already sent', async () => {
      const body =
        makeRows(4500, 5, 'bad')
          .map((r) => JSON.stringify(r))
          .join('\n') + '\n{"oops": \n';
      const r = await e2e.cluster.api('POST', '/tables/events/records', body, 'application/x-ndjson');
      assert.equal(r.status, 400);
      assert.match(String(r.body.message), /^row 4501 \(line 4501\): invalid JSON/);
      assert.equal(r.body.row, 4501);
    });

    it('a row that breaks the schema', async () => {
      await e2e.cluster.api('PUT', '/tables/typed', { schema: 'name:string,age:integer' });
      const r = await e2e.cluster.api(
        'POST',
        '/tables/typed/records',
        '{"name":"a","age":1}\n{"name":"b","age":"old"}\n',
        'application/x-ndjson',
      );
      assert.equal(r.status, 400);
      assert.deepEqual([r.body.row, r.body.field], [2, 'age']);
      assert.deepEqual(await e2e.cluster.query('typed'), []);
    });

    it('an unknown table', async () => {
      const r = await e2e.cluster.api('POST', '/tables/nope/records', '{}\n', 'application/x-ndjson');
      assert.equal(r.status, 404);
      assert.match(String(r.body.message), /table nope does not exist/);
    });

    it('a bad filter', async () => {
      const r = await e2e.cluster.api('POST', '/tables/events/query', { where: { n: { $regex: 'x' } } });
      assert.equal(r.status, 400);
      assert.match(String(r.body.message), /unknown operator "\$regex"/);
      const d = await e2e.cluster.api('DELETE', '/tables/events/records', { where: { $or: 1 } });
      assert.equal(d.status, 400);
    });

    it('an unknown field in sort on a table with a schema', async () => {
      const r = await e2e.cluster.api('POST', '/tables/typed/query', { sort: [{ field: 'agee' }] });
      assert.equal(r.status, 400);
      assert.match(String(r.body.message), /unknown field "agee"/);
    });

    it('a duplicate _id within one request', async () => {
      const r = await e2e.cluster.api(
        'POST',
        '/tables/events/records',
        '{"_id":"d1"}\n{"_id":"d2"}\n{"_id":"d1"}\n',
        'application/x-ndjson',
      );
      assert.equal(r.status, 409);
      assert.deepEqual([r.body.row, r.body.field], [3, '_id']);
    });

    it('a wrong content type', async () => {
      const r = await e2e.cluster.api('POST', '/tables/events/records', 'x', 'text/plain');
      assert.equal(r.status, 415);
    });
  });

  it('loads CSV typed by the table schema', async () => {
    await e2e.cluster.api('PUT', '/tables/people', {
      schema: { _id: 'string', name: 'string', age: 'integer', score: 'number', member: 'boolean', tags: 'json' },
    });
    const csv =
      'id_is_ignored,name,age,score,member,tags\n1,"Doe, Jane",41,3.5,true,"[""a"",""b""]"\n2,Li,,0.25,false,{}\n';
    const bad = await e2e.cluster.api('POST', '/tables/people/records', csv, 'text/csv');
    assert.equal(bad.status, 400, 'a column outside the schema is refused');
    const good = 'name,age,score,member,tags\n"Doe, Jane",41,3.5,true,"[""a"",""b""]"\nLi,,0.25,false,{}\n';
    const r = await e2e.cluster.api('POST', '/tables/people/records', good, 'text/csv');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const got = (
      await e2e.cluster.query<Record<string, unknown>>('people', { sort: [{ field: 'name', dir: 'asc' }] })
    ).map(({ _id, ...rest }) => (void _id, rest));
    assert.deepEqual(got, [
      { name: 'Doe, Jane', age: 41, score: 3.5, member: true, tags: ['a', 'b'] },
      { name: 'Li', score: 0.25, member: false, tags: {} },
    ]);
  });

  it('drives the shell like the original console', async () => {
    const r = spawnSync(process.execPath, [CLI(), 'shell', '--url', e2e.cluster.url], {
      input: 'create shelltab\n{"greeting":"hello","n":1}\nFETCH\nexit\n',
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /"greeting":"hello"/);
  });

  describe('when workers fail', () => {
    it('answers an UPDATE once a worker that stopped during it is no longer live; the worker applies it when it resumes', async () => {
      const before = await e2e.cluster.query<Row>('events');
      const lima = before.filter((r) => r.city === 'Lima').length;
      const w3 = e2e.cluster.workers.get('w3')!;
      // Still counted live when the UPDATE is sent, so the coordinator waits for it at first.
      w3.child.kill('SIGSTOP');
      try {
        const up = await e2e.cluster.api('PATCH', '/tables/events/records', {
          where: { city: 'Lima' },
          set: { paused: 1 },
        });
        assert.deepEqual(
          up,
          { status: 200, body: { updated: lima, pendingWorkers: ['w3'] } },
          'w3 has it queued; with R = 2 every row is counted from the other replica',
        );
      } finally {
        w3.child.kill('SIGCONT');
      }
      await e2e.cluster.waitLive(['w1', 'w2', 'w3']);
      const want = before.map((r) => (r.city === 'Lima' ? { ...r, paused: 1 } : r));
      assert.deepEqual(
        multiset(await e2e.cluster.query('events')),
        multiset(want),
        'w3 answers its chunks again, with the UPDATE applied',
      );
    });

    it('keeps reads complete and exact after a worker is SIGKILLed, before and after it is noticed', async () => {
      const expected = await e2e.cluster.query('events');
      const victim = e2e.cluster.workers.get('w2')!;
      victim.child.kill('SIGKILL');
      await victim.child.exited;
      const soon = await e2e.cluster.query('events');
      assert.deepEqual(
        multiset(soon),
        multiset(expected),
        'right after the kill (w2 still counted live; the read times out on it and retries)',
      );
      await e2e.cluster.waitLive(['w1', 'w3']);
      const later = await e2e.cluster.query('events');
      assert.deepEqual(multiset(later), multiset(expected), 'once w2 is known to be down');
      const sorted = await e2e.cluster.query<Row>('events', {
        sort: [{ field: 'n', dir: 'asc' }],
        limit: 100,
        fields: ['_id'],
      });
      assert.equal(new Set(sorted.map((r) => r._id)).size, 100);
      const count = await e2e.cluster.query('events', { aggregate: [{ op: 'count' }] });
      assert.deepEqual(count, [{ count: expected.length }]);
      // Writes go on with two workers; an UPDATE says w2 has it queued.
      const kyoto = expected.filter((r) => (r as Row).city === 'Kyoto').length;
      const up = await e2e.cluster.api('PATCH', '/tables/events/records', {
        where: { city: 'Kyoto' },
        set: { whileDown: 1 },
      });
      assert.deepEqual(up, { status: 200, body: { updated: kyoto, pendingWorkers: ['w2'] } });
      const more = makeRows(3000, 77, 'm');
      const r = await e2e.cluster.api(
        'POST',
        '/tables/events/records',
        more.map((x) => JSON.stringify(x)).join('\n'),
        'application/x-ndjson',
      );
      assert.equal(r.status, 200);
      assert.equal(
        canonical((await e2e.cluster.query('events', { aggregate: [{ op: 'count' }] }))[0]),
        canonical({ count: expected.length + 3000 }),
      );
      // And w2 catches up when it returns.
      e2e.cluster.startWorker('w2');
      await e2e.cluster.waitLive(['w1', 'w2', 'w3']);
      assert.deepEqual((await e2e.cluster.query('events', { aggregate: [{ op: 'count' }] }))[0], {
        count: expected.length + 3000,
      });
    });

    it('fails a read with 503 naming the workers when some chunk has no live replica, or answers partially on request', async () => {
      for (const id of ['w1', 'w3']) {
        e2e.cluster.workers.get(id)!.child.kill('SIGKILL');
        await e2e.cluster.workers.get(id)!.child.exited;
      }
      await e2e.cluster.waitLive(['w2']);
      const r = await e2e.cluster.api('POST', '/tables/events/query', {});
      assert.equal(r.status, 503);
      assert.match(String(r.body.message), /no live replica/);
      assert.ok(Array.isArray(r.body.missingWorkers));
      const p = await e2e.cluster.api<Record<string, unknown>[]>('POST', '/tables/events/query', { partial: true });
      assert.equal(p.status, 200);
      const last = p.body[p.body.length - 1];
      assert.equal(last._partial, true);
      assert.ok(p.body.length > 1);
    });
  });
});
