/**
 * Redis at its maxmemory (issue 16): writes are refused with a 503 that names maxmemory and
 * what fills Redis, `/status` and `/metrics` show used and max memory with a warning from
 * 80 %, and everything works again once memory is raised.
 */
import { strict as assert } from 'node:assert';
import Redis from 'ioredis';
import type { ClusterStatus } from '../../coordinator/cluster-status';
import { startCluster, type TestCluster } from '../support/cluster';
import { makeRows } from '../support/data';
import { startRedis, uniquePrefix, type TestRedis } from '../support/redis';

describe('e2e: Redis at its maxmemory', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let admin: Redis;
  let cluster: TestCluster;

  before(async function () {
    if (process.env.DSTORE_TEST_REDIS === 'cluster') return this.skip();
    // Our own server: CONFIG SET is not ours to send to a shared one.
    redis = await startRedis({ appendonly: true });
    admin = new Redis(redis.url);
    cluster = await startCluster({ redisUrl: redis.url, prefix: uniquePrefix(), workers: 2, replicas: 2 });
    await cluster.api('PUT', '/tables/t');
  });

  after(async () => {
    await cluster?.stop();
    admin?.disconnect();
    await redis?.stop();
  });

  it('refuses a POST with a 503 naming maxmemory, warns in /status and /metrics, and recovers when memory is raised', async () => {
    const ndjson = (n: number, seed: number) =>
      makeRows(n, seed, `m${seed}-`)
        .map((r) => JSON.stringify(r))
        .join('\n');
    assert.equal((await cluster.api('POST', '/tables/t/records', ndjson(2000, 1), 'application/x-ndjson')).status, 200);
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    await admin.config('SET', 'maxmemory', String(Math.floor(used * 1.05)));
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    const status = (await cluster.api<ClusterStatus>('GET', '/status')).body;
    assert.ok(status.redisMemory.usedRatio >= 0.8, JSON.stringify(status.redisMemory));
    assert.match(status.redisMemory.warning ?? '', /uses \d+ % of its maxmemory/);
    const metrics = await (await fetch(`${cluster.url}/metrics`)).text();
    assert.match(metrics, /^dstore_redis_maxmemory_bytes\{[^}]*\} \d+$/m);
    // Enough rows that the id index needs more than the few KB left.
    const refused = await cluster.api<{ error: string; message: string; setting: string }>(
      'POST',
      '/tables/t/records',
      ndjson(20_000, 2),
      'application/x-ndjson',
    );
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error, 'redis_full');
    assert.equal(refused.body.setting, 'maxmemory');
    assert.match(refused.body.message, /maxmemory.*_id index/s);
    await admin.config('SET', 'maxmemory', '0');
    const again = await cluster.api('POST', '/tables/t/records', ndjson(20_000, 3), 'application/x-ndjson');
    assert.equal(again.status, 200, JSON.stringify(again.body));
    const [count] = await cluster.query<{ count: number }>('t', { aggregate: [{ op: 'count' }] });
    assert.equal(count.count, 22_000, 'the refused POST stored nothing');
  });
});
