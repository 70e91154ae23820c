import 'reflect-metadata';
import { makeKeys } from '../../common/keys';
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { startCluster, type TestCluster } from '../support/cluster';
import { Driver } from '../support/driver';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { dropPrefix, sharedRedis, uniquePrefix, type TestRedis } from '../support/redis';
import { waitFor } from '../support/wait';

describe('e2e: a coordinator killed in the middle of a POST', function () {
  this.timeout(120_000);
  let redis: TestRedis;
  let prefix: string;
  let cluster: TestCluster;
  const base = makeRows(3000, 1, 'base');
  const batch = makeRows(6000, 2, 'post');
  const ndjson = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

  before(async () => {
    redis = await sharedRedis();
    prefix = uniquePrefix();
    cluster = await startCluster({
      redisUrl: redis.url,
      prefix,
      workers: 3,
      replicas: 2,
      env: { DSTORE_CHUNK_ROWS: '500', DSTORE_SWEEP_MS: '300', DSTORE_COORDINATOR_TIMEOUT_MS: '1500' },
    });
    await cluster.api('PUT', '/tables/t');
    assert.equal((await cluster.api('POST', '/tables/t/records', ndjson(base), 'application/x-ndjson')).status, 200);
  });

  after(async () => {
    await cluster?.stop();
    await dropPrefix(redis.url, prefix);
  });

  it('fails the client, never shows half the POST, aborts it, and takes the retry with the same _ids', async () => {
    // Stream the first half of the body and hold the request open: its chunks are placed.
    let clientError: Error | undefined;
    const req = http.request(`${cluster.url}/tables/t/records`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' } });
    req.on('error', (e) => (clientError = e));
    req.on('response', (res) => (clientError = new Error(`unexpected answer ${res.statusCode}`)));
    req.write(ndjson(batch.slice(0, 3000)));
    const post = await waitFor(
      async () => {
        const open = await cluster.redis.hkeys(makeKeys(prefix).openPosts);
        return open.length === 1 && (await cluster.redis.scard(makeKeys(prefix).postChunks(open[0]))) >= 5 ? open[0] : undefined;
      },
      { what: 'the POST to have placed its first chunks', timeoutMs: 20_000 },
    );

    const midway = await cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates(base, midway), { lost: 0, duplicated: 0, wrong: 0 }, 'an open POST is invisible');

    cluster.coordinator.kill('SIGKILL');
    await cluster.coordinator.exited;
    await waitFor(() => clientError, { what: 'the client to see the failure' });
    assert.match(clientError!.message, /socket hang up|ECONNRESET|EPIPE/);

    await cluster.startCoordinator();
    await waitFor(async () => (await cluster.redis.hlen(makeKeys(prefix).openPosts)) === 0, { what: 'clean-up to abort the abandoned POST', timeoutMs: 30_000 });
    assert.equal(await cluster.redis.exists(makeKeys(prefix).postChunks(post)), 0);
    const placed = Object.values(await cluster.redis.hgetall(makeKeys(prefix).chunks)).filter((v) => (JSON.parse(v) as { post: string }).post === post);
    assert.equal(placed.length, 0, 'no placement record of the aborted POST is left');
    const after = await cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates(base, after), { lost: 0, duplicated: 0, wrong: 0 }, 'nothing of the killed POST is visible');

    const retry = await cluster.api('POST', '/tables/t/records', ndjson(batch), 'application/x-ndjson');
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    const final = await cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates([...base, ...batch], final), { lost: 0, duplicated: 0, wrong: 0 });
    const st = await cluster.api<{ workers: { status: { rows: number } }[] }>('GET', '/workers');
    await waitFor(
      async () => {
        const s = await cluster.api<{ workers: { status: { rows: number } }[] }>('GET', '/workers');
        return s.body.workers.reduce((n, w) => n + w.status.rows, 0) === 2 * (base.length + batch.length);
      },
      { what: 'workers to hold exactly 2 copies of every row (the aborted chunks are gone)', timeoutMs: 10_000 },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(st.body)}`);
    });
  });

  it('finishes the commit of a POST whose coordinator died after deciding to commit', async () => {
    // The state a coordinator leaves when it dies between marking a POST `committing`
    // and sending COMMIT: chunks stored but uncommitted, the open record marked.
    const driver = new Driver(redis.url, prefix, 'ghost');
    const rows = makeRows(300, 9, 'ghost');
    const post = 'ghostpost1';
    const chunk = driver.post('t', rows, ['w1', 'w2'], 'ghostchunk1', post);
    for (const w of ['w1', 'w2']) await driver.send(w, chunk);
    await driver.until(() => driver.acksFor(chunk.chunk).length === 2, 'both copies stored');
    const before = await cluster.query<Row>('t', { where: { _id: { $in: rows.map((r) => r._id) } } });
    assert.equal(before.length, 0, 'uncommitted: invisible');
    await cluster.redis
      .multi()
      .hset(makeKeys(prefix).chunks, chunk.chunk, JSON.stringify({ table: 't', post, replicas: ['w1', 'w2'], rows: rows.length }))
      .sadd(makeKeys(prefix).tableChunks('t'), chunk.chunk)
      .sadd(makeKeys(prefix).workerChunks('w1'), chunk.chunk)
      .sadd(makeKeys(prefix).workerChunks('w2'), chunk.chunk)
      .sadd(makeKeys(prefix).postChunks(post), chunk.chunk)
      .sadd(makeKeys(prefix).postWorkers(post), 'w1', 'w2')
      .hset(makeKeys(prefix).openPosts, post, JSON.stringify({ coordinator: 'c-dead', table: 't', at: Date.now(), committing: true }))
      .exec();
    await waitFor(async () => (await cluster.redis.hexists(makeKeys(prefix).openPosts, post)) === 0, { what: 'clean-up to finish the commit', timeoutMs: 30_000 });
    const after = await cluster.query<Row>('t', { where: { _id: { $in: rows.map((r) => r._id) } } });
    assert.deepEqual(lossAndDuplicates(rows, after), { lost: 0, duplicated: 0, wrong: 0 }, 'committed, not aborted');
    await driver.close();
  });
});
