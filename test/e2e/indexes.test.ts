/**
 * Secondary indexes (issue 17, part 1): declared per table, sent to every worker through its
 * ops stream, built on every shard (a worker that was down builds them when it is back; a
 * worker that joins later builds them with the first chunk it gets), listed with their state
 * on every worker, and reads on indexed fields stay exact. The reference is plain JS over the
 * rows posted.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { IndexList } from '../../cli/commands/index-cmd';
import type { ReadExplain } from '../../coordinator/fetch-merger';
import { clusterSuite, type TestCluster } from '../support/cluster';
import { makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { projectRoot } from '../support/processes';
import { waitFor } from '../support/wait';

const CLI = () => path.join(projectRoot(), 'dist', 'cli', 'main.js');

function cli(url: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI(), ...args, '--url', url], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, COLUMNS: '200', DSTORE_TOKEN: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ids = (rs: Row[]) => rs.map((r) => String(r._id)).sort();

async function post(c: TestCluster, rows: Row[]): Promise<void> {
  const r = await c.api(
    'POST',
    '/tables/t/records',
    rows.map((x) => JSON.stringify(x)).join('\n'),
    'application/x-ndjson',
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

/** Waits until every listed worker reports `state` for `index`. */
async function waitIndex(c: TestCluster, index: string, workers: string[], state = 'ready'): Promise<IndexList> {
  return waitFor(
    async () => {
      const r = await c.api<IndexList>('GET', '/tables/t/indexes');
      const ix = r.body.indexes.find((i) => i.name === index);
      return ix && workers.every((w) => ix.workers[w]?.state === state) ? r.body : undefined;
    },
    { what: `index ${index} ${state} on ${workers.join(', ')}`, timeoutMs: 30_000 },
  );
}

describe('e2e: secondary indexes (3 workers, R = 2)', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '500' } });
  const rows = makeRows(3000, 71);
  const all: Row[] = [...rows];

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    await post(e2e.cluster, rows);
  });

  it('builds an index on a loaded table on every worker, and reads on it stay exact', async () => {
    const c = e2e.cluster;
    const r = await c.api('PUT', '/tables/t/indexes/by_city', { fields: ['city'] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const again = await c.api('PUT', '/tables/t/indexes/by_city', { fields: ['city'] });
    assert.equal(again.status, 200, 'the same declaration again changes nothing');
    await waitIndex(c, 'by_city', ['w1', 'w2', 'w3']);
    assert.equal((await c.api('PUT', '/tables/t/indexes/by_n', { fields: ['n', 'score'] })).status, 201);
    await waitIndex(c, 'by_n', ['w1', 'w2', 'w3']);
    const metrics = await waitFor(
      async () => {
        const text = await (await fetch(`${c.url}/metrics`)).text();
        return /dstore_worker_indexes\{workerId="w1",state="ready"[^}]*\} 2\b/.test(text) ? text : undefined;
      },
      { what: '/metrics to count the two indexes built on w1', timeoutMs: 15_000 },
    );
    assert.match(metrics, /dstore_worker_indexes\{workerId="w2",state="failed"[^}]*\} 0\b/);
    const city = all[7].city;
    const [{ explain }] = await c.query<{ explain: ReadExplain }>('t', { where: { city }, explain: true });
    assert.ok(explain.workers.length > 0);
    for (const w of explain.workers)
      assert.match((w.sqlite ?? []).join(' | '), /USING INDEX t_\d+_ix_by_city/, JSON.stringify(w));
    // Narrow: the fewest workers that hold every chunk (2 of 3 at R = 2), each chunk once; a
    // scan asks all 3.
    assert.equal(explain.workersAsked, 'narrow');
    assert.equal(explain.workers.length, 2, JSON.stringify(explain.workers.map((w) => w.worker)));
    const asked = explain.workers.flatMap((w) => w.chunks);
    assert.equal(asked.length, explain.tableChunks);
    assert.equal(new Set(asked).size, explain.tableChunks);
    const [{ explain: scan }] = await c.query<{ explain: ReadExplain }>('t', { where: { ok: true }, explain: true });
    assert.equal(scan.workersAsked, 'spread');
    assert.equal(scan.workers.length, 3);
    assert.deepEqual(ids(await c.query<Row>('t', { where: { city } })), ids(all.filter((x) => x.city === city)));
    const inRange = (x: Row) => typeof x.n === 'number' && x.n >= 100 && x.n < 250;
    assert.deepEqual(ids(await c.query<Row>('t', { where: { n: { $gte: 100, $lt: 250 } } })), ids(all.filter(inRange)));
    // A numeric string is never equal to a number, indexed or not.
    const strN = all.find((x) => typeof x.n === 'string')!;
    assert.deepEqual(ids(await c.query<Row>('t', { where: { n: strN.n } })), ids(all.filter((x) => x.n === strN.n)));
    const cities = [all[1].city, all[2].city];
    assert.deepEqual(
      ids(await c.query<Row>('t', { where: { city: { $in: cities }, n: { $lt: 500 } } })),
      ids(all.filter((x) => cities.includes(x.city) && typeof x.n === 'number' && x.n < 500)),
    );
    const top = await c.query<Row>('t', { where: { n: { $gt: 900 } }, sort: [{ field: 'n', dir: 'desc' }], limit: 5 });
    const want = all
      .filter((x) => typeof x.n === 'number' && x.n > 900)
      .sort((a, b) => (b.n as number) - (a.n as number) || (String(a._id) < String(b._id) ? -1 : 1))
      .slice(0, 5);
    assert.deepEqual(
      top.map((x) => x.n),
      want.map((x) => x.n),
    );
  });

  it('a worker down while an index is created builds it when it is back; a worker that joins builds it with its first chunk', async () => {
    const c = e2e.cluster;
    c.workers.get('w3')!.child.kill('SIGKILL');
    await c.workers.get('w3')!.child.exited;
    assert.equal((await c.api('PUT', '/tables/t/indexes/by_tag', { fields: ['meta.tag'] })).status, 201);
    const listed = await c.api<IndexList>('GET', '/tables/t/indexes');
    assert.equal(listed.body.indexes.find((i) => i.name === 'by_tag')!.workers.w3.state, 'building');
    c.startWorker('w3');
    await c.waitLive(['w1', 'w2', 'w3']);
    await waitIndex(c, 'by_tag', ['w1', 'w2', 'w3']);
    c.startWorker('w4');
    await c.waitLive(['w1', 'w2', 'w3', 'w4']);
    const more = makeRows(2000, 72, 'm');
    await post(c, more);
    all.push(...more);
    await waitIndex(c, 'by_tag', ['w4']);
    await waitIndex(c, 'by_city', ['w4']);
    // A worker that joins empty and gets chunks only from a rebalance builds them from the copies.
    c.startWorker('w5');
    await c.waitLive(['w1', 'w2', 'w3', 'w4', 'w5']);
    const rb = await c.api('POST', '/rebalance', {});
    assert.equal(rb.status, 202, JSON.stringify(rb.body));
    await waitIndex(c, 'by_city', ['w5']);
    await waitIndex(c, 'by_tag', ['w5']);
    const tag = all.find((x) => (x.meta as { tag: string | null }).tag)!.meta as { tag: string };
    assert.deepEqual(
      ids(await c.query<Row>('t', { where: { 'meta.tag': tag.tag } })),
      ids(all.filter((x) => (x.meta as { tag: string | null }).tag === tag.tag)),
    );
  });

  it('refuses bad declarations with a 400 naming the field, and drops an index everywhere', async () => {
    const c = e2e.cluster;
    const bad: [string, unknown, string][] = [
      ['bad-name', { fields: ['city'] }, 'index'],
      ['ok', { fields: [] }, 'fields'],
      ['ok', { fields: ['city', 'city'] }, 'fields[1]'],
      ['ok', { fields: ['_id'] }, 'fields[0]'],
      ['ok', { fields: ['$x'] }, 'fields[0]'],
      ['ok', { fields: ['city'], unique: true }, 'unique'],
    ];
    for (const [name, body, field] of bad) {
      const r = await c.api<{ field?: string; message?: string }>('PUT', `/tables/t/indexes/${name}`, body);
      assert.equal(r.status, 400, `${name} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.field, field, JSON.stringify(r.body));
    }
    assert.equal((await c.api('PUT', '/tables/nope/indexes/x', { fields: ['a'] })).status, 404);
    assert.equal((await c.api('DELETE', '/tables/t/indexes/nope')).status, 404);
    assert.equal((await c.api('DELETE', '/tables/t/indexes/by_tag')).status, 200);
    await waitFor(
      async () => {
        const st = await c.redis.hgetall(e2e.keys.workerStatus);
        return Object.values(st).every(
          (s) => !(JSON.parse(s) as { indexes?: Record<string, Record<string, unknown>> }).indexes?.t?.by_tag,
        )
          ? true
          : undefined;
      },
      { what: 'by_tag gone from every worker', timeoutMs: 30_000 },
    );
    const list = await c.api<IndexList>('GET', '/tables/t/indexes');
    assert.deepEqual(
      list.body.indexes.map((i) => i.name),
      ['by_city', 'by_n'],
    );
  });

  it('dstore index create, list and drop', async () => {
    const url = e2e.cluster.url;
    const made = cli(url, ['index', 'create', 't', 'by_score', '--fields', 'score']);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stdout, 'created index by_score on t (score)\n');
    const bad = cli(url, ['index', 'create', 't', 'x', '--fields', 'a,,b']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--fields/);
    const listed = cli(url, ['index', 'list', 't', '--format', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as IndexList).indexes.some((i) => i.name === 'by_score'));
    const table = cli(url, ['index', 'list', 't']);
    assert.match(table.stdout, /by_score\s+score\s+w1: (ready|building)/);
    await waitIndex(e2e.cluster, 'by_score', ['w1', 'w2', 'w3', 'w4', 'w5']);
    const plan = cli(url, ['fetch', 't', '--where', '{"score":{"$gt":99}}', '--explain']);
    assert.equal(plan.code, 0, plan.stderr);
    const explained = JSON.parse(plan.stdout) as ReadExplain;
    assert.equal(explained.table, 't');
    assert.ok(
      explained.workers.every((w) => w.sqlite?.some((s) => s.includes('USING INDEX'))),
      plan.stdout,
    );
    const dropped = cli(url, ['index', 'drop', 't', 'by_score']);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.equal(dropped.stdout, 'dropped index by_score on t\n');
  });
});

describe('e2e: index builds take turns (2 workers, R = 2, each build held 1.5 s)', function () {
  this.timeout(120_000);
  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_FAILPOINT_INDEX_BUILD_MS: '1500' } });

  it('builds on one worker at a time, while the other goes on applying writes', async () => {
    const c = e2e.cluster;
    await c.api('PUT', '/tables/t');
    const rows = makeRows(400, 3);
    await post(c, rows);
    const put = await c.api('PUT', '/tables/t/indexes/by_city', { fields: ['city'] });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    // Who holds the build lease, and each worker's state, as they change.
    const holders: string[] = [];
    const readyAt = new Map<string, number>();
    const more = makeRows(50, 4, 'during-');
    const posted = post(c, more);
    await waitFor(
      async () => {
        const h = await c.redis.get(e2e.keys.indexBuildLease);
        if (h && holders[holders.length - 1] !== h) holders.push(h);
        const r = await c.api<IndexList>('GET', '/tables/t/indexes');
        const ix = r.body.indexes.find((i) => i.name === 'by_city');
        for (const w of ['w1', 'w2'])
          if (ix?.workers[w]?.state === 'ready' && !readyAt.has(w)) readyAt.set(w, Date.now());
        return readyAt.size === 2 ? true : undefined;
      },
      { what: 'by_city ready on both workers', timeoutMs: 60_000, intervalMs: 20 },
    );
    await posted;
    assert.deepEqual([...holders].sort(), ['w1', 'w2'], `each held the lease in turn: ${holders.join(' → ')}`);
    const [first, second] = [...readyAt.values()].sort((a, b) => a - b);
    // The second build began after the first ended, and each holds the write lock 1.5 s.
    assert.ok(second - first >= 1000, `the builds overlapped: ready ${second - first} ms apart`);
    assert.equal(await c.redis.exists(e2e.keys.indexBuildLease), 0, 'the lease is released');
    const got = await c.query<Row>('t', { where: { city: rows[0].city } });
    const want = [...rows, ...more].filter((r) => r.city === rows[0].city);
    assert.deepEqual(ids(got), ids(want));
  });
});
