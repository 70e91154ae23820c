import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { clusterSuite } from '../support/cluster';
import { Driver } from '../support/driver';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { waitFor } from '../support/wait';
import { projectRoot } from '../support/processes';
import { streamedPost } from '../support/streamed-post';
import * as fs from 'node:fs';
import * as path from 'node:path';

describe('e2e: a coordinator killed in the middle of a POST', function () {
  this.timeout(120_000);
  const base = makeRows(3000, 1, 'base');
  const batch = makeRows(6000, 2, 'post');
  const ndjson = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '500', DSTORE_SWEEP_MS: '300', DSTORE_COORDINATOR_TIMEOUT_MS: '1500' },
  });

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    assert.equal(
      (await e2e.cluster.api('POST', '/tables/t/records', ndjson(base), 'application/x-ndjson')).status,
      200,
    );
  });

  it('fails the client, never shows half the POST, aborts it, and takes the retry with the same _ids', async () => {
    // Stream the first half of the body and hold the request open: its chunks are placed.
    let clientError: Error | undefined;
    const req = http.request(`${e2e.cluster.url}/tables/t/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
    });
    req.on('error', (e) => (clientError = e));
    req.on('response', (res) => (clientError = new Error(`unexpected answer ${res.statusCode}`)));
    req.write(ndjson(batch.slice(0, 3000)));
    const post = await waitFor(
      async () => {
        const open = await e2e.cluster.redis.hkeys(e2e.keys.openPosts);
        return open.length === 1 && (await e2e.cluster.redis.scard(e2e.keys.postChunks(open[0]))) >= 5
          ? open[0]
          : undefined;
      },
      { what: 'the POST to have placed its first chunks', timeoutMs: 20_000 },
    );

    const midway = await e2e.cluster.query<Row>('t');
    assert.deepEqual(
      lossAndDuplicates(base, midway),
      { lost: 0, duplicated: 0, wrong: 0 },
      'an open POST is invisible',
    );

    e2e.cluster.coordinator.kill('SIGKILL');
    await e2e.cluster.coordinator.exited;
    await waitFor(() => clientError, { what: 'the client to see the failure' });
    assert.match(clientError!.message, /socket hang up|ECONNRESET|EPIPE/);

    await e2e.cluster.startCoordinator();
    await waitFor(async () => (await e2e.cluster.redis.hlen(e2e.keys.openPosts)) === 0, {
      what: 'clean-up to abort the abandoned POST',
      timeoutMs: 30_000,
    });
    assert.equal(await e2e.cluster.redis.exists(e2e.keys.postChunks(post)), 0);
    const placed = Object.values(await e2e.cluster.redis.hgetall(e2e.keys.chunks)).filter(
      (v) => (JSON.parse(v) as { post: string }).post === post,
    );
    assert.equal(placed.length, 0, 'no placement record of the aborted POST is left');
    const after = await e2e.cluster.query<Row>('t');
    assert.deepEqual(
      lossAndDuplicates(base, after),
      { lost: 0, duplicated: 0, wrong: 0 },
      'nothing of the killed POST is visible',
    );

    const retry = await e2e.cluster.api('POST', '/tables/t/records', ndjson(batch), 'application/x-ndjson');
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    const final = await e2e.cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates([...base, ...batch], final), { lost: 0, duplicated: 0, wrong: 0 });
    const st = await e2e.cluster.api<{ workers: { status: { rows: number } }[] }>('GET', '/workers');
    await waitFor(
      async () => {
        const s = await e2e.cluster.api<{ workers: { status: { rows: number } }[] }>('GET', '/workers');
        return s.body.workers.reduce((n, w) => n + w.status.rows, 0) === 2 * (base.length + batch.length);
      },
      { what: 'workers to hold exactly 2 copies of every row (the aborted chunks are gone)', timeoutMs: 10_000 },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify(st.body)}`);
    });
  });

  it('finishes the commit of a POST whose coordinator died after deciding to commit', async () => {
    // The state a coordinator leaves when it dies between marking a POST `committing`
    // and sending COMMIT: chunks stored but uncommitted, their ids reserved, the open record marked.
    const driver = new Driver(e2e.redis.url, e2e.prefix, 'ghost');
    const rows = makeRows(300, 9, 'ghost');
    const post = 'ghostpost1';
    const chunk = driver.post('t', rows, ['w1', 'w2'], 'ghostchunk1', post);
    for (const w of ['w1', 'w2']) await driver.send(w, chunk);
    await driver.until(() => driver.acksFor(chunk.chunk).length === 2, 'both copies stored');
    const before = await e2e.cluster.query<Row>('t', { where: { _id: { $in: rows.map((r) => r._id) } } });
    assert.equal(before.length, 0, 'uncommitted: invisible');
    await e2e.cluster.redis
      .multi()
      .hset(
        e2e.keys.chunks,
        chunk.chunk,
        JSON.stringify({ table: 't', post, replicas: ['w1', 'w2'], rows: rows.length }),
      )
      .sadd(e2e.keys.tableChunks('t'), chunk.chunk)
      .sadd(e2e.keys.workerChunks('w1'), chunk.chunk)
      .sadd(e2e.keys.workerChunks('w2'), chunk.chunk)
      .sadd(e2e.keys.postChunks(post), chunk.chunk)
      .sadd(e2e.keys.postWorkers(post), 'w1', 'w2')
      .hset(
        e2e.keys.openPosts,
        post,
        JSON.stringify({ coordinator: 'c-dead', table: 't', at: Date.now(), committing: true }),
      )
      .exec();
    // Its ids were reserved before the chunk was sent, as ingest does (another slot on a cluster).
    await e2e.cluster.redis.hset(e2e.keys.idIndex('t'), ...rows.flatMap((r) => [r._id, chunk.chunk]));
    await waitFor(async () => (await e2e.cluster.redis.hexists(e2e.keys.openPosts, post)) === 0, {
      what: 'clean-up to finish the commit',
      timeoutMs: 30_000,
    });
    const after = await e2e.cluster.query<Row>('t', { where: { _id: { $in: rows.map((r) => r._id) } } });
    assert.deepEqual(lossAndDuplicates(rows, after), { lost: 0, duplicated: 0, wrong: 0 }, 'committed, not aborted');
    await driver.close();
  });

  it('a POST that clean-up aborted takes no more chunks: the client gets 503 and nothing of it is visible', async () => {
    const c = e2e.cluster;
    const rows = makeRows(2000, 11, 'late');
    const { push, answer } = streamedPost(c.url, 't');
    push(ndjson(rows.slice(0, 1200)));
    const post = await waitFor(
      async () => {
        const open = await c.redis.hkeys(e2e.keys.openPosts);
        return open.length === 1 && (await c.redis.scard(e2e.keys.postChunks(open[0]))) >= 2 ? open[0] : undefined;
      },
      { what: 'the POST to have placed two chunks', timeoutMs: 20_000 },
    );
    // What clean-up does to a POST whose coordinator looks dead (unregister-chunks.lua): its
    // placement and open record are gone. The coordinator lives on and keeps storing.
    const workers = await c.redis.smembers(e2e.keys.postWorkers(post));
    const lua = fs.readFileSync(path.join(projectRoot(), 'common', 'lua', 'unregister-chunks.lua'), 'utf8');
    const keys = [
      e2e.keys.chunks,
      e2e.keys.tableChunks('t'),
      e2e.keys.openPosts,
      e2e.keys.postChunks(post),
      e2e.keys.postWorkers(post),
      e2e.keys.underReplicated,
      ...workers.map((w) => e2e.keys.workerChunks(w)),
    ];
    assert.ok(Number(await c.redis.eval(lua, keys.length, ...keys, post)) >= 2);
    push(ndjson(rows.slice(1200)));
    push(null);
    const res = await answer;
    const body = (await res.json()) as { error: string; message: string };
    assert.equal(res.status, 503, JSON.stringify(body));
    assert.match(body.message, /aborted by the clean-up job/);
    assert.equal(await c.redis.hexists(e2e.keys.openPosts, post), 0, 'the POST did not come back open');
    const got = await c.query<Row>('t', { where: { _id: { $in: rows.map((r) => r._id) } } });
    assert.equal(got.length, 0, 'nothing of it is visible');
  });
});
