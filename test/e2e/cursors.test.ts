/**
 * Keyset cursors (issue 18, part 1): a read with a `limit` that stops before the end ends with
 * `{"_next": "<cursor>"}`; the same query with that cursor is the next page. The reference is
 * plain JS over the rows posted, ordered as SQLite orders `json_extract` values (NULL, numbers,
 * text), then by `_id`. Pages are followed through two coordinators, with an index on the sort
 * key and without, while rows are inserted, updated and deleted, and across a drain.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { SortSpec } from '../../common/query';
import { compareSql, toSqlValue } from '../../common/sqlite-order';
import { clusterSuite, type TestCluster } from '../support/cluster';
import { makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { projectRoot } from '../support/processes';
import { waitFor } from '../support/wait';

interface Page {
  status: number;
  rows: Row[];
  next?: string;
  body: unknown;
}

/** One page: POST /tables/t/query with the query and the cursor, through `url`. */
async function page(url: string, q: Record<string, unknown>, cursor?: string): Promise<Page> {
  const res = await fetch(`${url}/tables/t/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(cursor === undefined ? q : { ...q, cursor }),
  });
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, rows: [], body: JSON.parse(text) as unknown };
  const lines = text
    .split('\n')
    .filter((l) => l)
    .map((l) => JSON.parse(l) as Row & { _next?: string; _error?: unknown });
  const rows: Row[] = [];
  let next: string | undefined;
  lines.forEach((l, i) => {
    assert.equal(l._error, undefined, JSON.stringify(l));
    if (l._next !== undefined) {
      assert.equal(i, lines.length - 1, 'the cursor is the last line');
      next = l._next;
    } else rows.push(l);
  });
  return { status: 200, rows, next, body: undefined };
}

/** Follows cursors from the first page to the last, alternating between `urls`; `between` runs after each page. */
async function allPages(
  urls: string[],
  q: Record<string, unknown>,
  between?: (pageNo: number) => Promise<void>,
): Promise<{ rows: Row[]; pages: number }> {
  const rows: Row[] = [];
  let cursor: string | undefined;
  for (let n = 0; ; n++) {
    const p = await page(urls[n % urls.length], q, cursor);
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.ok(p.rows.length <= (q.limit as number), `page ${n} has ${p.rows.length} rows`);
    rows.push(...p.rows);
    if (!p.next) return { rows, pages: n + 1 };
    assert.equal(p.rows.length, q.limit, `page ${n} has a cursor, so it is full`);
    cursor = p.next;
    await between?.(n);
  }
}

/** The rows in the order a read sorted by `sort` (then `_id`) answers them. */
function ordered(rows: Row[], sort: SortSpec[]): Row[] {
  return [...rows].sort((a, b) => {
    for (const s of sort) {
      const c = compareSql(toSqlValue(a[s.field]), toSqlValue(b[s.field]));
      if (c !== 0) return s.dir === 'desc' ? -c : c;
    }
    return compareSql(a._id, b._id);
  });
}

const ids = (rs: Row[]) => rs.map((r) => r._id);

async function post(c: TestCluster, rows: Row[]): Promise<void> {
  const r = await c.api('POST', '/tables/t/records', rows);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

describe('e2e: keyset cursors (3 workers, R = 2)', function () {
  this.timeout(240_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '150' } });
  const rows = makeRows(2000, 181);
  // Some rows without `n`, and some with null: NULL keys sort first ascending, last descending.
  rows.forEach((r, i) => {
    if (i % 37 === 0) delete r.n;
    else if (i % 41 === 0) r.n = null as unknown as number;
  });
  let other = '';

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    await post(e2e.cluster, rows);
    other = (await e2e.cluster.spawnCoordinator('coord-b')).url;
  });

  it('pages in _id order without a sort: every row once, the last page without a cursor', async () => {
    const c = e2e.cluster;
    const got = await allPages([c.url, other], { limit: 300 });
    assert.equal(got.pages, Math.ceil(rows.length / 300));
    assert.deepEqual(ids(got.rows), ids(ordered(rows, [])));
    // A page that ends exactly at the end has no cursor.
    const exact = await page(c.url, { limit: rows.length });
    assert.equal(exact.rows.length, rows.length);
    assert.equal(exact.next, undefined);
  });

  for (const indexed of [false, true])
    it(`pages a multi-key sort with NULLs and mixed types${indexed ? ', on an index' : ''}, through two coordinators`, async () => {
      const c = e2e.cluster;
      if (indexed) {
        assert.equal((await c.api('PUT', '/tables/t/indexes/by_n', { fields: ['n'] })).status, 201);
        await waitFor(
          async () => {
            const r = await c.api<{ indexes: { name: string; workers: Record<string, { state: string }> }[] }>(
              'GET',
              '/tables/t/indexes',
            );
            const ix = r.body.indexes.find((i) => i.name === 'by_n');
            return ix && ['w1', 'w2', 'w3'].every((w) => ix.workers[w]?.state === 'ready');
          },
          { what: 'index by_n ready', timeoutMs: 30_000 },
        );
      }
      for (const sort of [
        [{ field: 'n', dir: 'desc' as const }],
        [{ field: 'n', dir: 'asc' as const }],
        [
          { field: 'city', dir: 'asc' as const },
          { field: 'n', dir: 'desc' as const },
        ],
      ]) {
        const where = { ok: true };
        const want = ordered(
          rows.filter((r) => r.ok === true),
          sort,
        );
        const got = await allPages([c.url, other], { where, sort, limit: 97, fields: ['_id', 'city', 'ok'] });
        assert.deepEqual(ids(got.rows), ids(want), JSON.stringify(sort));
        assert.deepEqual(Object.keys(got.rows[0]).sort(), ['_id', 'city', 'ok'], 'the projection is kept');
      }
      if (indexed) {
        // A later page seeks the index to where it starts.
        const first = await page(c.url, { sort: [{ field: 'n', dir: 'desc' }], limit: 50 });
        const r = await c.api<{ explain: { workers: { sqlite?: string[] }[] } }[]>('POST', '/tables/t/query', {
          sort: [{ field: 'n', dir: 'desc' }],
          limit: 50,
          cursor: first.next,
          explain: true,
        });
        for (const w of r.body[0].explain.workers)
          assert.match((w.sqlite ?? []).join(' | '), /USING INDEX t_\d+_ix_by_n \(<expr><\?\)/, JSON.stringify(w));
      }
    });

  it('dstore fetch --all follows the cursors; one page says how to get the next', () => {
    const c = e2e.cluster;
    const run = (args: string[]) =>
      spawnSync(process.execPath, [path.join(projectRoot(), 'dist', 'cli', 'main.js'), ...args, '--url', c.url], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, DSTORE_TOKEN: '' },
      });
    const all = run(['fetch', 't', '--all', '--page-size', '170', '--sort', 'score:desc', '--format', 'ndjson']);
    assert.equal(all.status, 0, all.stderr);
    const got = all.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Row);
    assert.deepEqual(ids(got), ids(ordered(rows, [{ field: 'score', dir: 'desc' }])));
    const one = run(['fetch', 't', '--limit', '5', '--format', 'ndjson']);
    assert.equal(one.status, 0, one.stderr);
    const cursor = /--cursor (\S+)/.exec(one.stderr)?.[1];
    assert.ok(cursor, one.stderr);
    const two = run(['fetch', 't', '--limit', '5', '--cursor', cursor, '--format', 'ndjson']);
    assert.equal(two.status, 0, two.stderr);
    const both = [...one.stdout.trim().split('\n'), ...two.stdout.trim().split('\n')].map((l) => JSON.parse(l) as Row);
    assert.deepEqual(ids(both), ids(ordered(rows, [])).slice(0, 10));
  });

  it('refuses a changed or foreign cursor, and one sent with another query, with a 400 naming cursor', async () => {
    const c = e2e.cluster;
    const q = { sort: [{ field: 'n', dir: 'asc' }], limit: 10 };
    const first = await page(c.url, q);
    const cursor = first.next!;
    const [body, mac] = cursor.split('.');
    const edited = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), a: [0, 'x'] }),
    );
    for (const [bad, why, code] of [
      [`${edited.toString('base64url')}.${mac}`, /not made by this cluster or was changed/, 'bad_cursor'],
      ['garbage', /not made by this cluster or was changed/, 'bad_cursor'],
      // Not a string: the route's schema refuses it (route-schemas.ts), naming the field too.
      [42, /"cursor" must be string/, 'bad_request'],
    ] as const) {
      const r = await page(c.url, q, bad as string);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.deepEqual((r.body as { error: string; field: string }).error, code);
      assert.equal((r.body as { field: string }).field, 'cursor');
      assert.match((r.body as { message: string }).message, why);
    }
    const otherQuery = await page(c.url, { ...q, where: { city: 'Oslo' } }, cursor);
    assert.equal(otherQuery.status, 400);
    assert.match((otherQuery.body as { message: string }).message, /belongs to another query/);
    const agg = await page(c.url, { aggregate: [{ op: 'count' }], limit: 10, sort: q.sort }, cursor);
    assert.equal(agg.status, 400, JSON.stringify(agg.body));
    // GET takes the cursor as ?cursor=.
    const res = await fetch(`${other}/tables/t/records?sort=n&limit=10&cursor=${encodeURIComponent(cursor)}`);
    assert.equal(res.status, 200);
    const lines = (await res.text()).trim().split('\n');
    const second = await page(c.url, q, cursor);
    assert.deepEqual(
      lines.slice(0, -1).map((l) => (JSON.parse(l) as Row)._id),
      ids(second.rows),
    );
    assert.equal((JSON.parse(lines[lines.length - 1]) as { _next: string })._next, second.next);
  });

  it('returns every row that existed before the first page exactly once while rows are inserted, updated and deleted', async () => {
    const c = e2e.cluster;
    const sort = [{ field: 'n', dir: 'asc' as const }];
    const start = ordered(
      (await c.query<Row>('t', {})).filter((r) => r._id.startsWith('r')),
      sort,
    );
    // Deleted while paging: every 10th row; updated (a field that is not the sort key): every 7th.
    const doomed = new Set(start.filter((_, i) => i % 10 === 3).map((r) => r._id));
    const touched = start.filter((_, i) => i % 7 === 2).map((r) => r._id);
    let added = 0;
    const got = await allPages([c.url, other], { sort, limit: 120 }, async (n) => {
      const fresh = makeRows(60, 900 + n, `new${n}-`);
      await post(c, fresh);
      added += fresh.length;
      const del = [...doomed].slice(n * 25, n * 25 + 25);
      if (del.length) {
        const r = await c.api('DELETE', '/tables/t/records', { where: { _id: { $in: del } } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
      const upd = touched.slice(n * 20, n * 20 + 20);
      if (upd.length) {
        const r = await c.api('PATCH', '/tables/t/records', { where: { _id: { $in: upd } }, set: { city: 'Paged' } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
    });
    const seen = new Map<string, number>();
    for (const r of got.rows) seen.set(r._id, (seen.get(r._id) ?? 0) + 1);
    const twice = [...seen].filter(([, k]) => k > 1).map(([id]) => id);
    assert.deepEqual(twice, [], 'no row twice');
    const lost = start.filter((r) => !doomed.has(r._id) && !seen.has(r._id)).map((r) => r._id);
    assert.deepEqual(lost, [], 'every row that was there before the first page and was not deleted');
    assert.ok(added > 0);
    // The answer is in order, whatever came and went.
    assert.deepEqual(ids(got.rows), ids(ordered(got.rows, sort)));
  });

  it('follows cursors across a drain of a worker', async () => {
    const c = e2e.cluster;
    const all = await c.query<Row>('t', {});
    const want = ordered(all, [{ field: 'score', dir: 'desc' }]);
    let drained: Promise<unknown> | undefined;
    const got = await allPages([c.url, other], { sort: [{ field: 'score', dir: 'desc' }], limit: 200 }, async (n) => {
      if (n !== 2) return;
      const r = await c.api('POST', '/workers/w2/drain', {});
      assert.equal(r.status, 202, JSON.stringify(r.body));
      drained = waitFor(
        async () => (await c.api<{ state: string }>('GET', '/workers/w2/drain')).body.state === 'retired',
        { what: 'w2 to be retired', timeoutMs: 60_000 },
      );
    });
    await drained;
    assert.deepEqual(ids(got.rows), ids(want));
    assert.ok(got.pages > 5);
  });
});
