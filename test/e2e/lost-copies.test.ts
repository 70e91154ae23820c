/**
 * Regression tests of issue 12's wrong answers: a copy that the placement records name but
 * that is not there (a lost data directory, a POST while a replica was down, a full disk)
 * must never turn into a short 200, and repair must bring every chunk back to R copies.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChunkMeta } from '../../coordinator/placement';
import type { ClusterStatus } from '../../coordinator/cluster-status';
import { clusterSuite, type TestCluster } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { tempDir } from '../support/processes';
import { waitFor } from '../support/wait';

const ndjson = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n');

/** Every kind of read, checked against plain JS over `rows`. */
async function assertExact(cluster: TestCluster, rows: Row[], when: string): Promise<void> {
  const all = await cluster.query<Row>('t');
  const trailer = all.find((r) => !('_id' in r));
  assert.equal(trailer, undefined, `${when}: a line that is not a row: ${JSON.stringify(trailer)}`);
  assert.deepEqual(lossAndDuplicates(rows, all), { lost: 0, duplicated: 0, wrong: 0 }, `${when}: all rows`);
  const [count] = await cluster.query<{ count: number }>('t', { aggregate: [{ op: 'count' }] });
  assert.equal(count.count, rows.length, `${when}: count()`);
  const top = await cluster.query<Row>('t', { sort: [{ field: 'score', dir: 'desc' }], limit: 25 });
  // SQLite's order: text above numbers above NULL/missing; `score` is a number or missing, ties by _id.
  const want = rows
    .filter((r) => typeof r.score === 'number')
    .sort((a, b) => (b.score as number) - (a.score as number) || (a._id < b._id ? -1 : 1))
    .slice(0, 25);
  assert.deepEqual(
    top.map((r) => r._id),
    want.map((r) => r._id),
    `${when}: sort + limit`,
  );
  const groups = await cluster.query<{ city: string; count: number }>('t', {
    aggregate: [{ op: 'count' }],
    groupBy: ['city'],
  });
  const byCity = new Map<string, number>();
  for (const r of rows) byCity.set(r.city as string, (byCity.get(r.city as string) ?? 0) + 1);
  assert.deepEqual(new Map(groups.map((g) => [g.city, g.count])), byCity, `${when}: group-by`);
}

async function chunkMetas(cluster: TestCluster, keys: { chunks: string }): Promise<ChunkMeta[]> {
  return Object.values(await cluster.redis.hgetall(keys.chunks)).map((v) => JSON.parse(v) as ChunkMeta);
}

/** Waits until every chunk has `r` recorded replicas and nothing is marked under-replicated. */
async function waitRepaired(
  cluster: TestCluster,
  keys: { chunks: string; underReplicated: string },
  r: number,
  what: string,
): Promise<void> {
  await waitFor(
    async () => {
      const metas = await chunkMetas(cluster, keys);
      const under = await cluster.redis.zcard(keys.underReplicated);
      return metas.length > 0 && under === 0 && metas.every((m) => new Set(m.replicas).size === r);
    },
    { what, timeoutMs: 60_000, intervalMs: 250 },
  );
}

describe('e2e: a worker restarted under its id after its data directory was lost', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '1000', DSTORE_SWEEP_MS: '2000' } });
  const rows = makeRows(6000, 71);

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    const r = await e2e.cluster.api('POST', '/tables/t/records', ndjson(rows), 'application/x-ndjson');
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  it('answers every read exactly, is seen as a new shard, and gets its copies back from the other replicas', async () => {
    const c = e2e.cluster;
    const w3 = c.workers.get('w3')!;
    const shardBefore = (JSON.parse((await c.redis.hget(e2e.keys.workerStatus, 'w3'))!) as { shard: string }).shard;
    w3.child.kill('SIGKILL');
    await w3.child.exited;
    fs.rmSync(w3.dataDir, { recursive: true, force: true });
    // Reads while w3 is dead but its heartbeat is still fresh, and after it came back empty.
    await assertExact(c, rows, 'w3 killed, not yet noticed');
    const next = c.startWorker('w3', w3.dataDir);
    await waitFor(
      async () => JSON.parse((await c.redis.hget(e2e.keys.workerStatus, 'w3')) ?? '{}').pid === next.child.pid,
      { what: 'the new w3 to heartbeat' },
    );
    await c.waitLive(['w1', 'w2', 'w3']);
    // Before and after the sweep notices: the placements still name w3, which holds nothing.
    await assertExact(c, rows, 'right after w3 came back empty');
    const status = JSON.parse((await c.redis.hget(e2e.keys.workerStatus, 'w3'))!) as { shard: string };
    assert.notEqual(
      status.shard,
      shardBefore,
      `the new data directory is a new shard (${shardBefore} before, ${status.shard} now)`,
    );
    await waitFor(
      async () => JSON.parse((await c.redis.hget(e2e.keys.workerShards, 'w3')) ?? '{}').shard === status.shard,
      { what: 'the sweep to record the new shard of w3' },
    );
    await waitRepaired(c, e2e.keys, 2, 'every chunk back at two copies');
    // Its heartbeat counts them at the next beat after the copies were applied.
    await waitFor(
      async () => (JSON.parse((await c.redis.hget(e2e.keys.workerStatus, 'w3'))!) as { chunks: number }).chunks > 0,
      { what: 'repair to copy chunks back onto w3 (its heartbeat counting them)', timeoutMs: 10_000 },
    );
    await assertExact(c, rows, 'after repair');
    // The copies repair made are real: with w1 gone, w2 and w3 answer everything.
    c.workers.get('w1')!.child.kill('SIGKILL');
    await c.waitLive(['w2', 'w3']);
    await assertExact(c, rows, 'with w1 killed');
  });
});

describe('e2e: a POST while one of two replicas is down (R = 2)', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '500', DSTORE_SWEEP_MS: '300' } });
  const rows = makeRows(3000, 72);

  before(async () => void (await e2e.cluster.api('PUT', '/tables/t')));

  it('says the chunks are under-replicated and repairs them to two copies once the worker is back', async () => {
    const c = e2e.cluster;
    const w2 = c.workers.get('w2')!;
    w2.child.kill('SIGKILL');
    await w2.child.exited;
    await c.waitLive(['w1']);
    const r = await c.api<{ chunks: number; underReplicated: number }>(
      'POST',
      '/tables/t/records',
      ndjson(rows),
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.chunks, 6);
    assert.equal(r.body.underReplicated, 6, 'every chunk has one copy of two');
    assert.deepEqual(
      (await chunkMetas(c, e2e.keys)).map((m) => m.replicas),
      Array(6).fill(['w1']),
    );
    const status = (await c.api<ClusterStatus>('GET', '/status')).body;
    assert.equal(status.underReplicated, 6, '/status counts them');
    c.startWorker('w2');
    await c.waitLive(['w1', 'w2']);
    await waitRepaired(c, e2e.keys, 2, 'every chunk copied to w2');
    c.workers.get('w1')!.child.kill('SIGKILL');
    await c.waitLive(['w2']);
    await assertExact(c, rows, 'with only w2 left');
  });
});

describe('e2e: chunks whose rows were all deleted, when a replica loses its disk', function () {
  this.timeout(180_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '100', DSTORE_SWEEP_MS: '300' } });
  const posts = [0, 1, 2, 3, 4, 5].map((i) => makeRows(50, 80 + i, `p${i}-`));

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    for (const rows of posts) {
      const r = await e2e.cluster.api('POST', '/tables/t/records', ndjson(rows), 'application/x-ndjson');
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });

  it('copies them empty: every recorded replica holds every chunk, and the records stay put', async () => {
    const c = e2e.cluster;
    // Three one-chunk POSTs emptied: with R = 2 of 3 workers, w3 holds at least one of them.
    const emptied = posts.slice(0, 3).flat();
    const d = await c.api<{ deleted: number }>('DELETE', '/tables/t/records', {
      where: { _id: { $in: emptied.map((r) => r._id) } },
    });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal(d.body.deleted, emptied.length);
    const kept = posts.slice(3).flat();
    await assertExact(c, kept, 'after the DELETE');

    const w3 = c.workers.get('w3')!;
    w3.child.kill('SIGKILL');
    await w3.child.exited;
    fs.rmSync(w3.dataDir, { recursive: true, force: true });
    const shardBefore = JSON.parse((await c.redis.hget(e2e.keys.workerShards, 'w3'))!) as { shard: string };
    c.startWorker('w3', w3.dataDir);
    await c.waitLive(['w1', 'w2', 'w3']);
    await waitFor(
      async () => JSON.parse((await c.redis.hget(e2e.keys.workerShards, 'w3')) ?? '{}').shard !== shardBefore.shard,
      { what: 'the sweep to record the new shard of w3' },
    );
    await waitRepaired(c, e2e.keys, 2, 'every chunk, emptied ones too, back at two copies');
    const settled = JSON.stringify(await c.redis.hgetall(e2e.keys.chunks));
    // Several sweeps later nothing moved: a copy that reads as missing would be repaired again and again.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(JSON.stringify(await c.redis.hgetall(e2e.keys.chunks)), settled, 'placement records unchanged');
    assert.equal(await c.redis.zcard(e2e.keys.underReplicated), 0);
    // Each worker stopped in turn: the other replica of each of its chunks answers, so every
    // recorded replica really holds its chunk (one that did not would answer `missing`: 503).
    for (const id of ['w1', 'w2', 'w3']) {
      const w = c.workers.get(id)!;
      w.child.kill('SIGSTOP');
      try {
        await assertExact(c, kept, `with ${id} stopped`);
      } finally {
        w.child.kill('SIGCONT');
      }
      await c.waitLive(['w1', 'w2', 'w3']);
    }
  });
});

/** A tmpfs of `mib` MiB at a fresh directory, or undefined where mounting is not allowed. */
function mountTmpfs(mib: number): string | undefined {
  const dir = tempDir('tmpfs');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    return undefined;
  }
}

describe('e2e: a worker whose disk fills up and is freed again', function () {
  this.timeout(240_000);
  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '1000', DSTORE_SWEEP_MS: '300' } });
  const rows = makeRows(20_000, 73).map((r) => ({ ...r, pad: 'x'.repeat(100) }));
  let mount: string | undefined;
  let fullFile: string | undefined;

  before(async function () {
    mount = mountTmpfs(4);
    // Without mounts (no root), SQLite's page limit plays the full disk (DSTORE_FAILPOINT_DISK_FULL_FILE).
    const dataDir = mount ? path.join(mount, 'w3') : tempDir('e2e-w3');
    fullFile = mount ? undefined : path.join(tempDir('full'), 'full');
    e2e.cluster.startWorker('w3', dataDir, fullFile ? { DSTORE_FAILPOINT_DISK_FULL_FILE: fullFile } : {});
    await e2e.cluster.waitLive(['w1', 'w2', 'w3']);
    await e2e.cluster.api('PUT', '/tables/t');
  });

  after(() => {
    if (mount) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
  });

  it('keeps every read exact while it is full, and ends with two verified copies of every chunk', async () => {
    const c = e2e.cluster;
    const storage = async () =>
      (JSON.parse((await c.redis.hget(e2e.keys.workerStatus, 'w3'))!) as { storage?: string }).storage;
    let sawFull = false;
    const posted: Row[] = [];
    for (let i = 0; i < 10; i++) {
      if (fullFile && i === 3) fs.writeFileSync(fullFile, '');
      const part = rows.slice(i * 2000, (i + 1) * 2000);
      const r = await c.api('POST', '/tables/t/records', ndjson(part), 'application/x-ndjson');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      posted.push(...part);
      sawFull ||= (await storage()) === 'full';
      const [count] = await c.query<{ count: number }>('t', { aggregate: [{ op: 'count' }] });
      assert.equal(count.count, posted.length, `count() after POST ${i + 1}`);
    }
    sawFull ||= await waitFor(async () => (await storage()) === 'full', {
      what: 'w3 to report a full disk',
      timeoutMs: 20_000,
    }).catch(() => false);
    assert.ok(sawFull, 'w3 reported its full disk in its heartbeat');
    const status = (await c.api<ClusterStatus>('GET', '/status')).body;
    const w3 = status.workers.find((w) => w.id === 'w3')!;
    assert.equal(w3.live, false, 'a worker that cannot store is not live');
    await assertExact(c, posted, 'while w3 is full');
    // Space returns.
    if (mount) execFileSync('mount', ['-o', 'remount,size=256m', mount], { stdio: 'ignore' });
    else fs.rmSync(fullFile!);
    await waitFor(async () => (await storage()) === 'ok', { what: 'w3 to store again', timeoutMs: 60_000 });
    await c.waitLive(['w1', 'w2', 'w3']);
    await waitRepaired(c, e2e.keys, 2, 'every chunk at two copies');
    c.workers.get('w1')!.child.kill('SIGKILL');
    await c.waitLive(['w2', 'w3']);
    await assertExact(c, posted, 'with w1 killed after w3 recovered');
  });
});
