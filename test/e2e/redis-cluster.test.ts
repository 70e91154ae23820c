import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import type { Cluster } from 'ioredis';
import { clusterSuite } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import { clusterMode } from '../support/redis';
import type { ClusterStatus } from '../../coordinator/cluster-status';

/**
 * What only a Redis Cluster can show: that the keys really spread over the masters, that
 * the shared metadata stays in one slot, and that FETCH goes over sharded pub/sub. Runs
 * under `npm run test:cluster` (DSTORE_TEST_REDIS=cluster); on a single Redis there is
 * nothing to check, so it is skipped there with that reason.
 */
describe('e2e: dstore on a three-master Redis Cluster', function () {
  this.timeout(120_000);

  before(function () {
    if (!clusterMode()) {
      // single Redis: run `npm run test:cluster` for this suite (mocha then skips the later before hooks too)
      this.skip();
    }
  });

  // Six workers, so that their streams' slots land on more than one master.
  const e2e = clusterSuite({ workers: 6, replicas: 2, env: { DSTORE_CHUNK_ROWS: '200' } });

  /** The master connections of the test's cluster client. */
  function masters(): ReturnType<Cluster['nodes']> {
    return (e2e.cluster.redis as unknown as Cluster).nodes('master');
  }

  it('stores and reads exactly, with worker streams on several masters and metadata on one slot', async () => {
    assert.equal((await e2e.cluster.api('PUT', '/tables/t')).status, 201);
    const rows = makeRows(6000, 7);
    const posted = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      rows.map((r) => JSON.stringify(r)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
    assert.deepEqual(lossAndDuplicates(rows, await e2e.cluster.query('t')), { lost: 0, duplicated: 0, wrong: 0 });
    const [{ count }] = await e2e.cluster.query<{ count: number }>('t', { aggregate: [{ op: 'count' }] });
    assert.equal(count, rows.length);

    const keys = e2e.keys;
    const nodeOf = new Map<string, string>();
    for (const m of masters()) {
      for (const pattern of keys.patterns) {
        let cursor = '0';
        do {
          const [next, found] = await m.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          for (const k of found) nodeOf.set(k, `${m.options.host}:${m.options.port}`);
        } while (cursor !== '0');
      }
    }
    const streamNodes = new Set([...e2e.cluster.workers.keys()].map((w) => nodeOf.get(keys.workerOps(w))));
    assert.ok(!streamNodes.has(undefined), 'every worker has its ops stream');
    assert.ok(streamNodes.size >= 2, `the six workers' streams spread over ${streamNodes.size} master(s)`);
    const shared = [
      keys.chunks,
      keys.tables,
      keys.workers,
      keys.workerStatus,
      keys.token,
      keys.tableChunks('t'),
      keys.coordinators,
    ];
    const sharedNodes = new Set(shared.map((k) => nodeOf.get(k)));
    assert.equal(sharedNodes.size, 1, `shared metadata on one node: ${[...sharedNodes].join(', ')}`);
    const bull = [...nodeOf.keys()].filter((k) => k.startsWith(`${keys.bullPrefix}:`));
    assert.ok(bull.length > 0, 'BullMQ keys exist under the hash-tagged prefix');
    assert.ok(
      bull.every((k) => nodeOf.get(k) === [...sharedNodes][0]),
      'BullMQ keys share the metadata slot',
    );
  });

  it('answers GET /status and GET /metrics with every worker stream read from its own node', async () => {
    const s = (await e2e.cluster.api<ClusterStatus>('GET', '/status')).body;
    assert.deepEqual(s.incomplete, []);
    assert.equal(s.workers.length, 6);
    for (const w of s.workers)
      assert.equal(w.stream?.length, await e2e.cluster.redis.xlen(e2e.keys.workerOps(w.id)), w.id);
    const metrics = await (await fetch(`${e2e.cluster.url}/metrics`)).text();
    assert.match(metrics, /^dstore_workers_live\{[^}]*\} 6$/m);
    assert.doesNotMatch(metrics, /^dstore_status_incomplete/m);
  });

  it('sends FETCH over sharded pub/sub: each worker is the one SSUBSCRIBE subscriber of its channel, none a classic one', async () => {
    for (const id of e2e.cluster.workers.keys()) {
      const channel = e2e.keys.workerFetch(id);
      let sharded = 0;
      let classic = 0;
      for (const m of masters()) {
        const s = (await m.call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number];
        sharded += Number(s[1]);
        const c = (await m.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
        classic += Number(c[1]);
      }
      assert.equal(sharded, 1, id);
      assert.equal(classic, 0, id);
    }
  });
});
