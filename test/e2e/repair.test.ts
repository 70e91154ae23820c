import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { waitFor } from '../support/wait';

describe('e2e: repair of a worker lost for good (BullMQ repair jobs, two coordinators)', function () {
  this.timeout(180_000);
  const rows = makeRows(20_000, 123);

  const e2e = clusterSuite({
    workers: 4,
    replicas: 2,
    env: { DSTORE_REPAIR_AFTER_MS: '2000', DSTORE_SWEEP_MS: '300' },
  });

  before(async () => {
    // A second coordinator takes repair jobs too: each chunk must still be repaired once.
    await e2e.cluster.spawnCoordinator('coordinator-2');
    await e2e.cluster.api('PUT', '/tables/t');
    const r = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      rows.map((x) => JSON.stringify(x)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  async function placements(): Promise<Map<string, string[]>> {
    const all = await e2e.cluster.redis.hgetall(e2e.keys.chunks);
    return new Map(Object.entries(all).map(([k, v]) => [k, (JSON.parse(v) as { replicas: string[] }).replicas]));
  }

  it('copies every chunk of the lost worker to a live one, then reads survive losing a second worker', async () => {
    const before = await placements();
    assert.equal(before.size, 20);
    const onW2 = [...before.values()].filter((r) => r.includes('w2')).length;
    assert.ok(onW2 > 0);

    const w2 = e2e.cluster.workers.get('w2')!;
    w2.child.kill('SIGKILL');
    await w2.child.exited;
    const t0 = Date.now();
    await waitFor(
      async () => {
        const p = await placements();
        return [...p.values()].every((r) => r.length === 2 && !r.includes('w2')) ? p : undefined;
      },
      { what: 'every chunk back at 2 replicas without w2', timeoutMs: 60_000 },
    );
    const recoverMs = Date.now() - t0;
    // Two coordinators sweep and each chunk has two candidate targets: a chunk repaired
    // twice at once would gain a third copy.
    const st = await e2e.cluster.api<{ workers: { id: string; status: { chunks: number } }[] }>('GET', '/workers');
    await waitFor(
      async () => {
        const s2 = await e2e.cluster.api<{ workers: { id: string; status: { chunks: number } }[] }>('GET', '/workers');
        const held = s2.body.workers.filter((w) => w.id !== 'w2').reduce((n, w) => n + w.status.chunks, 0);
        return held === 40
          ? true
          : held > 40
            ? Promise.reject(new Error(`${held} copies of 20 chunks: a chunk was copied twice`))
            : undefined;
      },
      { what: 'the three survivors to hold exactly 2 copies of each of the 20 chunks', timeoutMs: 10_000 },
    ).catch((e) => {
      throw new Error(`${(e as Error).message} (${JSON.stringify(st.body)})`);
    });
    assert.equal(await e2e.cluster.redis.scard(e2e.keys.workerChunks('w2')), 0);
    assert.equal(await e2e.cluster.redis.zcard(e2e.keys.underReplicated), 0);

    // Now every chunk has 2 copies among w1, w3, w4: losing w1 as well must not lose a row.
    const w1 = e2e.cluster.workers.get('w1')!;
    w1.child.kill('SIGKILL');
    await w1.child.exited;
    await e2e.cluster.waitLive(['w3', 'w4']);
    const got = await e2e.cluster.query<Row>('t');
    assert.deepEqual(
      lossAndDuplicates(rows, got),
      { lost: 0, duplicated: 0, wrong: 0 },
      `recovered in ${recoverMs} ms`,
    );
  });

  it('has a returning lost worker drop its re-homed chunks, so reads never see duplicates', async () => {
    e2e.cluster.startWorker('w2');
    e2e.cluster.startWorker('w1');
    await e2e.cluster.waitLive(['w1', 'w2', 'w3', 'w4']);
    const got = await e2e.cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
    const count = await e2e.cluster.query('t', { aggregate: [{ op: 'count' }] });
    assert.deepEqual(count, [{ count: rows.length }]);
  });

  it('tops chunks left with one copy back up to R once workers return', async () => {
    await waitFor(
      async () => {
        const p = await placements();
        return (
          [...p.values()].every((r) => r.length === 2) &&
          (await e2e.cluster.redis.zcard(e2e.keys.underReplicated)) === 0
        );
      },
      { what: 'every chunk at 2 replicas again', timeoutMs: 60_000 },
    );
    // Each worker holds exactly what placement says: no stale copy survived on a returning worker.
    await waitFor(
      async () => {
        const st = await e2e.cluster.api<{ workers: { id: string; status: { chunks: number } }[] }>('GET', '/workers');
        for (const w of st.body.workers) {
          if (w.status.chunks !== (await e2e.cluster.redis.scard(e2e.keys.workerChunks(w.id)))) return undefined;
        }
        return st.body.workers.reduce((n, w) => n + w.status.chunks, 0) === 40;
      },
      { what: 'each worker to hold exactly its placed chunks, 40 copies in all', timeoutMs: 30_000 },
    );
    const got = await e2e.cluster.query<Row>('t');
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
  });
});
