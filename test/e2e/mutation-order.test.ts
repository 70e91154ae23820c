import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import { shardChunks } from '../support/shards';
import { makeRows } from '../support/data';
import type { Row } from '../support/driver';

describe('e2e: replicas converge under concurrent UPDATE, DELETE and POST from two coordinators', function () {
  this.timeout(120_000);
  let urls: string[];

  // Two workers and R = 2: every chunk is on both, so every op reaches both streams. The
  // jitter delays each XADD as a slow link to one Redis node would, so that two ops sent
  // at once reach the two streams in different orders unless something orders them.
  const e2e = clusterSuite({
    workers: 2,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '100', DSTORE_FAILPOINT_SEND_JITTER_MS: '20' },
  });

  before(async () => {
    urls = [e2e.cluster.url, (await e2e.cluster.spawnCoordinator('coordinator-2')).url];
    await e2e.cluster.api('PUT', '/tables/t');
    const r = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      makeRows(2000, 5)
        .map((x) => JSON.stringify(x))
        .join('\n'),
      'application/x-ndjson',
    );
    assert.equal(r.status, 200);
  });

  it('applies non-commuting mutations and commits in one order on every replica', async () => {
    // Each UPDATE sets the same field to its own value, so two replicas that apply the last
    // two of a round in different orders end with different rows. DELETEs select on that
    // field and POSTs commit rows the UPDATEs then reach or not: neither commutes with the
    // UPDATEs. Replicas are compared after every round (a later round would mask a
    // reordering in an earlier one).
    const ROUNDS = 6;
    for (let round = 0; round < ROUNDS; round++) {
      const requests: Promise<Response>[] = [];
      for (let j = 0; j < 12; j++) {
        const i = round * 100 + j;
        const url = urls[j % 2];
        const json = { 'content-type': 'application/json' };
        if (j === 11) {
          requests.push(
            fetch(`${url}/tables/t/records`, {
              method: 'DELETE',
              headers: json,
              body: JSON.stringify({ where: { x: i - 1, n: { $lt: 50 } } }),
            }),
          );
        } else if (j === 5) {
          const rows = makeRows(150, 100 + i, `p${i}-`);
          requests.push(
            fetch(`${url}/tables/t/records`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-ndjson' },
              body: rows.map((x) => JSON.stringify(x)).join('\n'),
            }),
          );
        } else {
          requests.push(
            fetch(`${url}/tables/t/records`, {
              method: 'PATCH',
              headers: json,
              body: JSON.stringify({ where: {}, set: { x: i } }),
            }),
          );
        }
      }
      const answers = await Promise.all(requests);
      assert.deepEqual(
        answers.map((a) => a.status),
        answers.map(() => 200),
      );
      // A read through each coordinator waits until both workers applied every op above.
      for (const url of urls) {
        const res = await fetch(`${url}/tables/t/query`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ aggregate: [{ op: 'count' }] }),
        });
        assert.equal(res.status, 200);
      }

      const [a, b] = [
        shardChunks(e2e.cluster.workers.get('w1')!.dataDir),
        shardChunks(e2e.cluster.workers.get('w2')!.dataDir),
      ];
      assert.deepEqual(
        [...a.keys()].sort(),
        [...b.keys()].sort(),
        `round ${round}: both workers hold the same committed chunks`,
      );
      const differing = [...a.keys()].filter((c) => a.get(c) !== b.get(c));
      assert.deepEqual(
        differing,
        [],
        `round ${round}: ${differing.length} of ${a.size} chunks differ between the two replicas`,
      );

      // What a read answers is one serial order's outcome: every row that existed at the
      // round's last UPDATE carries its value, whichever UPDATE that was.
      const xs = new Set(
        (await e2e.cluster.query<Row>('t'))
          .filter((r) => typeof r.x === 'number' && (r.x as number) >= round * 100)
          .map((r) => r.x),
      );
      assert.equal(
        xs.size,
        1,
        `round ${round}: every row carries the value of the UPDATE ordered last, not ${[...xs].join(', ')}`,
      );
    }
  });

  it('waits for a write-order lock left by a coordinator that died holding it, until its lease ends', async () => {
    const lock = e2e.keys.orderLock('t');
    // As a dead holder leaves it: someone else's token, expiring on its own.
    assert.equal(await e2e.cluster.redis.set(lock, 'dead-coordinator', 'PX', 1500, 'NX'), 'OK');
    let answered = false;
    const patch = e2e.cluster
      .api('PATCH', '/tables/t/records', { where: { n: 1 }, set: { late: true } })
      .then((r) => ((answered = true), r));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(answered, false, 'the UPDATE waits while the lock is held');
    assert.equal((await patch).status, 200);
    assert.equal(await e2e.cluster.redis.exists(lock), 0, 'and releases the lock it then took');
  });
});
