/**
 * Reads ask only the workers that hold the data (issue 15): one replica per chunk, `_id`
 * lookups pruned to the chunks the id index names, and a worker that holds none of a read's
 * chunks never receives it. Checked with the workers' own counters of FETCHes received and
 * with `"explain": true`.
 */
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { ReadExplain } from '../../coordinator/fetch-merger';
import { clusterSuite, type TestCluster } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { waitFor } from '../support/wait';

/**
 * A counter of each worker so far, from its heartbeat: FETCHes received (`fetchRequests`), or
 * rows of the answers it finished (`fetchRows`).
 */
async function workerCounters(
  c: TestCluster,
  statusKey: string,
  counter: 'fetchRequests' | 'fetchRows',
): Promise<Map<string, number>> {
  const all = await c.redis.hgetall(statusKey);
  return new Map(
    Object.entries(all).map(([w, raw]) => [
      w,
      (JSON.parse(raw) as { counters?: Record<string, number | undefined> }).counters?.[counter] ?? 0,
    ]),
  );
}

/** FETCHes each worker received so far. */
const fetchRequests = (c: TestCluster, statusKey: string) => workerCounters(c, statusKey, 'fetchRequests');

/** Creates `table` and POSTs `rs` to it as NDJSON, which must answer 200. */
async function load(c: TestCluster, table: string, rs: Row[]): Promise<void> {
  await c.api('PUT', `/tables/${table}`);
  const r = await c.api(
    'POST',
    `/tables/${table}/records`,
    rs.map((x) => JSON.stringify(x)).join('\n'),
    'application/x-ndjson',
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

/**
 * Runs `fn`, then waits for two heartbeats so that the counters include its FETCHes; returns each worker's increase.
 */
async function countRequests(c: TestCluster, statusKey: string, fn: () => Promise<void>): Promise<Map<string, number>> {
  const before = await fetchRequests(c, statusKey);
  await fn();
  await new Promise((r) => setTimeout(r, 500));
  const after = await fetchRequests(c, statusKey);
  return new Map([...after].map(([w, n]) => [w, n - (before.get(w) ?? 0)]));
}

/**
 * POSTs `q` to `table`'s query route and reads the whole answer; the first time `when(text so
 * far)` holds, the client stops reading, runs `meanwhile`, and reads on 300 ms after it ended.
 */
function readPausing(
  c: TestCluster,
  table: string,
  q: Record<string, unknown>,
  when: (text: string) => boolean,
  meanwhile: () => Promise<void>,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = http.request(
      `${c.url}/tables/${table}/query`,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        let paused = false;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
          if (paused || !when(text)) return;
          paused = true;
          res.pause();
          meanwhile().then(
            () => setTimeout(() => res.resume(), 300),
            (e: unknown) => {
              res.destroy();
              reject(e as Error);
            },
          );
        });
        res.on('end', () => resolve(text));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(q));
  });
}

const explain = async (c: TestCluster, table: string, q: Record<string, unknown>) =>
  (await c.query<{ explain: ReadExplain }>(table, { ...q, explain: true }))[0].explain;

describe('e2e: routed reads (4 workers, R = 2)', function () {
  this.timeout(120_000);
  // Small batches and a small window: a read of the big table is still going when a test stops a worker.
  const e2e = clusterSuite({
    workers: 4,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '500', DSTORE_FETCH_BATCH_ROWS: '20', DSTORE_FETCH_WINDOW: '2' },
  });
  const rows = makeRows(4000, 61);
  const small = makeRows(300, 62, 's');

  before(async () => {
    await load(e2e.cluster, 'big', rows);
    // One chunk: on 2 of the 4 workers.
    await load(e2e.cluster, 'small', small);
  });

  it('asks one replica per chunk, and never a worker that holds none of the table', async () => {
    const c = e2e.cluster;
    const plan = await explain(c, 'small', {});
    assert.equal(plan.tableChunks, 1);
    assert.equal(plan.workers.length, 1, JSON.stringify(plan));
    const holders = JSON.parse((await c.redis.hget(e2e.keys.chunks, plan.workers[0].chunks[0]))!).replicas as string[];
    assert.equal(holders.length, 2);
    // The plan asked its worker for a SQLite plan: let that FETCH reach the counters first.
    await new Promise((r) => setTimeout(r, 500));
    const got = await countRequests(c, e2e.keys.workerStatus, async () => {
      for (let i = 0; i < 20; i++) {
        const r = await c.query<Row>('small');
        assert.deepEqual(lossAndDuplicates(small, r), { lost: 0, duplicated: 0, wrong: 0 });
      }
    });
    for (const [w, n] of got) {
      if (holders.includes(w)) continue;
      assert.equal(n, 0, `${w} holds nothing of the table and received ${n} FETCHes`);
    }
    assert.equal(
      [...got.values()].reduce((a, b) => a + b, 0),
      20,
      'one FETCH per read',
    );
    // Spread over both replicas (least work first, then at random).
    assert.ok(
      holders.every((w) => (got.get(w) ?? 0) > 0),
      `both replicas answered: ${JSON.stringify(Object.fromEntries(got))}`,
    );
  });

  it('prunes a lookup by _id to the chunk that holds it, an $in to its chunks, and a missing id to no worker', async () => {
    const c = e2e.cluster;
    const one = await explain(c, 'big', { where: { _id: rows[1234]._id } });
    assert.deepEqual(one.pruned, { by: '_id', ids: 1, chunks: 1 });
    assert.equal(one.workers.length, 1);
    const ten = rows.filter((_, i) => i % 400 === 7).map((r) => r._id);
    assert.equal(ten.length, 10);
    const many = await explain(c, 'big', { where: { $and: [{ _id: { $in: ten } }, { n: { $gte: 0 } }] } });
    assert.equal(many.pruned?.chunks, 8, '10 ids in 8 chunks of 500 rows');
    assert.ok(many.workers.length <= 8);
    const none = await explain(c, 'big', { where: { _id: 'no-such-id' } });
    assert.deepEqual([none.pruned?.chunks, none.workers], [0, []]);

    const got = await countRequests(c, e2e.keys.workerStatus, async () => {
      const [r] = await c.query<Row>('big', { where: { _id: rows[1234]._id } });
      assert.deepEqual(r, rows[1234]);
      const rs = await c.query<Row>('big', { where: { _id: { $in: ten } } });
      assert.deepEqual(
        lossAndDuplicates(
          rows.filter((x) => ten.includes(x._id)),
          rs,
        ),
        { lost: 0, duplicated: 0, wrong: 0 },
      );
      assert.deepEqual(await c.query('big', { where: { _id: 'no-such-id' } }), []);
      const [count] = await c.query<{ count: number }>('big', {
        where: { _id: { $in: [...ten, 'nope'] } },
        aggregate: [{ op: 'count' }],
      });
      assert.equal(count.count, 10);
    });
    const total = [...got.values()].reduce((a, b) => a + b, 0);
    assert.ok(total <= 1 + 8 + 0 + 8, `${total} FETCHes for a lookup, an $in of 10, a missing id and a count`);
  });

  it('still finds a row after its _id was deleted and inserted again elsewhere', async () => {
    const c = e2e.cluster;
    const id = rows[10]._id;
    assert.equal((await c.api('DELETE', '/tables/big/records', { where: { _id: id } })).status, 200);
    assert.deepEqual(await c.query('big', { where: { _id: id } }), []);
    const again = { ...rows[10], n: 4242 };
    assert.equal(
      (await c.api('POST', '/tables/big/records', JSON.stringify(again), 'application/x-ndjson')).status,
      200,
    );
    assert.deepEqual(await c.query('big', { where: { _id: id } }), [again]);
    rows[10] = again;
  });

  it('reads exactly when the replica a read was routed to is SIGSTOPped in the middle of it', async () => {
    const c = e2e.cluster;
    // About 10 MB of answer, read by a client that pauses: far more than socket buffers hold,
    // so the workers are still sending (2 batches of 20 rows at a time) when one is stopped.
    const wide = makeRows(40_000, 63, 'w').map((r) => ({ ...r, pad: 'p'.repeat(150) }));
    await load(c, 'wide', wide);
    const victim = (await explain(c, 'wide', {})).workers[0].worker;
    const body = await readPausing(
      c,
      'wide',
      {},
      () => true,
      async () => void c.workers.get(victim)!.child.kill('SIGSTOP'),
    ).finally(() => c.workers.get(victim)!.child.kill('SIGCONT'));
    const got = body
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row);
    assert.deepEqual(lossAndDuplicates(wide, got), { lost: 0, duplicated: 0, wrong: 0 });
    await waitFor(async () => (await c.api<{ liveWorkers: number }>('GET', '/healthz')).body.liveWorkers === 4, {
      what: 'the victim live again',
      timeoutMs: 20_000,
    });
  });

  it('asks a worker by token for every chunk it holds, and again with the list when it holds another set', async () => {
    const c = e2e.cluster;
    const rs = makeRows(3000, 63, 't');
    await load(c, 'tok', rs);
    // A limit read in `_id` order is narrow: 2 workers, each asked for all it holds (by token).
    const all = { sort: [{ field: '_id', dir: 'asc' }], limit: 5000 };
    const plan = await explain(c, 'tok', all);
    assert.equal(plan.workersAsked, 'narrow');
    assert.equal(plan.workers.length, 2, JSON.stringify(plan));
    await new Promise((r) => setTimeout(r, 500));
    let got = await countRequests(c, e2e.keys.workerStatus, async () => {
      assert.deepEqual(lossAndDuplicates(rs, await c.query<Row>('tok', all)), { lost: 0, duplicated: 0, wrong: 0 });
    });
    assert.equal(
      [...got.values()].reduce((a, b) => a + b, 0),
      2,
      'one FETCH each',
    );

    // The placement stops listing one chunk its workers still hold (as after a POST committed
    // on the workers that the read's placement did not include yet): each of the 2 asked
    // workers that holds it answers `unlisted` and is asked again with the list.
    const gone = plan.workers[0].chunks[0];
    const chunkOf = await c.redis.hgetall(e2e.keys.idIndex('tok'));
    const kept = rs.filter((r) => chunkOf[r._id] !== gone);
    assert.ok(kept.length < rs.length && kept.length > 0);
    const meta = JSON.parse((await c.redis.hget(e2e.keys.chunks, gone))!) as { replicas: string[] };
    await c.redis
      .multi()
      .srem(e2e.keys.tableChunks('tok'), gone)
      .hdel(e2e.keys.chunks, gone)
      .incr(e2e.keys.placementVersion('tok'))
      .exec();
    const asked = (await explain(c, 'tok', all)).workers;
    const holders = asked.filter((w) => meta.replicas.includes(w.worker)).length;
    assert.ok(holders >= 1, JSON.stringify({ asked, meta }));
    await new Promise((r) => setTimeout(r, 500));
    let answer: Row[] = [];
    got = await countRequests(c, e2e.keys.workerStatus, async () => {
      answer = await c.query<Row>('tok', all);
    });
    assert.equal(
      [...got.values()].reduce((a, b) => a + b, 0),
      asked.length + holders,
      'each holder of the chunk asked twice',
    );
    // Exactly the rows of the chunks the placement lists, in `_id` order.
    assert.deepEqual(lossAndDuplicates(kept, answer), { lost: 0, duplicated: 0, wrong: 0 });
    assert.deepEqual(
      answer.map((r) => r._id),
      kept.map((r) => r._id).sort(),
    );
  });
  it('a limit read whose worker dies mid-read asks the others only for the rows after the last one merged', async () => {
    const c = e2e.cluster;
    // About 4 MB of answer in `_id` order (a narrow read: 2 of the 4 workers), read by a
    // client that pauses: the workers are still sending when one of them is killed.
    const rs = makeRows(20_000, 64, 'k').map((r) => ({ ...r, pad: 'p'.repeat(150) }));
    await load(c, 'resume', rs);
    const q = { sort: [{ field: '_id', dir: 'asc' }], limit: 30_000 };
    assert.equal((await explain(c, 'resume', q)).workersAsked, 'narrow');
    await new Promise((r) => setTimeout(r, 500));
    const before = await workerCounters(c, e2e.keys.workerStatus, 'fetchRows');
    const askedBefore = await fetchRequests(c, e2e.keys.workerStatus);
    let atKill = 0;
    let victim = '';
    // One of the 2 workers this read asked (a narrow read takes turns between the covers, so
    // not necessarily the pair `explain` showed): the one whose FETCH count went up.
    const killAsked = async () => {
      await new Promise((r) => setTimeout(r, 500));
      const asked = await fetchRequests(c, e2e.keys.workerStatus);
      const readers = [...asked].filter(([w, n]) => n > (askedBefore.get(w) ?? 0)).map(([w]) => w);
      assert.equal(readers.length, 2, `workers asked: ${readers.join(', ')}`);
      victim = readers.sort()[0];
      c.workers.get(victim)!.child.kill('SIGKILL');
    };
    const body = await readPausing(c, 'resume', q, (text) => (atKill = text.split('\n').length - 1) >= 2000, killAsked);
    const got = body
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row);
    assert.deepEqual(lossAndDuplicates(rs, got), { lost: 0, duplicated: 0, wrong: 0 });
    assert.deepEqual(
      got.map((r) => r._id),
      rs.map((r) => r._id).sort(),
    );
    assert.ok(atKill >= 2000 && atKill < rs.length, `killed after ${atKill} rows`);
    // Finished answers only count: the first round's were cut short when it failed, so what
    // the survivors count is the retry's, which starts after the last row merged (at least
    // the rows the client had when the worker died). Asked again from the start, it was all
    // 20,000.
    await new Promise((r) => setTimeout(r, 600));
    const after = await workerCounters(c, e2e.keys.workerStatus, 'fetchRows');
    const survivors = [...c.workers.keys()].filter((w) => w !== victim);
    const retried = survivors.reduce((n, w) => n + (after.get(w) ?? 0) - (before.get(w) ?? 0), 0);
    assert.ok(retried > 0 && retried <= rs.length - atKill, `the retry sent ${retried} rows after ${atKill} were read`);
    c.startWorker(victim);
    await c.waitLive(4);
  });
});
