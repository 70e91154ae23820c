import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import { canonical, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { runCli } from '../support/processes';
import { waitFor } from '../support/wait';

const ndjson = (rows: Row[]) => rows.map((r) => JSON.stringify(r)).join('\n');

/**
 * Checks one read against the reference: every row of `must` exactly once and unchanged,
 * rows of `may` (a POST committing while the read ran) at most once, nothing else.
 */
function checkRead(got: Row[], must: Map<string, string>, may: Map<string, string> = new Map()): string | undefined {
  const seen = new Map<string, number>();
  for (const g of got) {
    const n = (seen.get(g._id) ?? 0) + 1;
    seen.set(g._id, n);
    if (n > 1) return `row ${g._id} came ${n} times`;
    const want = must.get(g._id) ?? may.get(g._id);
    if (want === undefined) return `unexpected row ${g._id}`;
    if (want !== canonical(g)) return `row ${g._id} differs`;
  }
  for (const id of must.keys())
    if (!seen.has(id)) return `row ${id} missing (${seen.size} rows read, ${must.size} expected)`;
  return undefined;
}

/** Reads continuously (plain, sorted, count) until stopped; records every inexact answer. */
class ReaderLoop {
  reads = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly urls: () => string[],
    private readonly must: () => Map<string, string>,
    private readonly may: () => Map<string, string>,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const url = this.urls()[i % this.urls().length];
      const kind = i % 3;
      const body =
        kind === 0 ? {} : kind === 1 ? { sort: [{ field: 'n', dir: 'desc' }] } : { aggregate: [{ op: 'count' }] };
      // Snapshots: the test adds rows to the reference once their POST answered.
      const must = new Map(this.must());
      const may = new Map(this.may());
      try {
        const res = await fetch(`${url}/tables/t/query`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const text = await res.text();
        if (res.status !== 200) {
          this.failures.push(`read ${i} (${kind}): HTTP ${res.status} ${text.slice(0, 300)}`);
          continue;
        }
        const lines = text
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Row & { count?: number; _error?: unknown });
        if (kind === 2) {
          const n = lines[0]?.count ?? -1;
          if (n < must.size || n > must.size + may.size)
            this.failures.push(
              `count read ${i}: ${n}, expected ${must.size}${may.size ? `..${must.size + may.size}` : ''}`,
            );
        } else {
          const bad = checkRead(lines, must, may);
          if (bad) this.failures.push(`${kind === 0 ? 'plain' : 'sorted'} read ${i}: ${bad}`);
        }
        this.reads++;
      } catch (e) {
        this.failures.push(`read ${i}: ${(e as Error).message}`);
      }
    }
  }

  async stop(): Promise<{ reads: number; failures: string[] }> {
    this.stopped = true;
    await this.done;
    return { reads: this.reads, failures: this.failures };
  }
}

/**
 * Pauses workers in turn (SIGSTOP for `ms`, then SIGCONT), so that one read is handled by
 * some holders before a move switches and by others after it: the window a move must
 * close. Pauses stay well under DSTORE_FETCH_TIMEOUT_MS, so no worker is dropped from a read.
 */
class Pauser {
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(pids: () => number[], ms = 300) {
    this.done = (async () => {
      for (let i = 0; !this.stopped; i++) {
        const list = pids();
        const pid = list[i % list.length];
        try {
          process.kill(pid, 'SIGSTOP');
          await new Promise((r) => setTimeout(r, ms));
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        await new Promise((r) => setTimeout(r, ms));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe('e2e: workers join, drain and rebalance while reads run (4 workers, R = 2, two coordinators)', function () {
  this.timeout(300_000);
  let url2: string;
  const base = makeRows(9000, 7, 'a');
  const second = makeRows(3000, 8, 'b');
  const during = makeRows(3000, 9, 'c');
  const late = makeRows(1500, 10, 'd');
  const ref = (rows: Row[]) => new Map(rows.map((r) => [r._id, canonical(r)]));

  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: '100', DSTORE_SWEEP_MS: '300', DSTORE_REPAIR_AFTER_MS: '60000' },
  });

  before(async () => {
    ({ url: url2 } = await e2e.cluster.spawnCoordinator('coordinator-2'));
    await e2e.cluster.api('PUT', '/tables/t');
  });

  async function post(rows: Row[]): Promise<string> {
    const r = await e2e.cluster.api<{ post: string }>(
      'POST',
      '/tables/t/records',
      ndjson(rows),
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.post;
  }

  async function placements(): Promise<Map<string, { post: string; replicas: string[] }>> {
    const all = await e2e.cluster.redis.hgetall(e2e.keys.chunks);
    return new Map(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as { post: string; replicas: string[] }]));
  }

  /** Chunks per worker from the placement records; each must match what the worker holds. */
  async function counts(ids: string[]): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const w of ids) out[w] = await e2e.cluster.redis.scard(e2e.keys.workerChunks(w));
    return out;
  }

  it('places chunks of the next POST on a worker that joins', async () => {
    const first = await post(base);
    e2e.cluster.startWorker('w4');
    await e2e.cluster.waitLive(['w1', 'w2', 'w3', 'w4']);
    const next = await post(second);
    const p = await placements();
    const onW4 = [...p.values()].filter((m) => m.replicas.includes('w4'));
    assert.equal(onW4.filter((m) => m.post === first).length, 0, 'w4 joined after the first POST');
    // 30 chunks at R = 2 over 4 workers by the token: w4 gets 15 of the 60 copies.
    assert.ok(onW4.filter((m) => m.post === next).length >= 14, `w4 holds ${onW4.length} chunks of the second POST`);
    const rows = await e2e.cluster.query<Row>('t');
    assert.equal(checkRead(rows, ref([...base, ...second])), undefined);
    // The worker's own shard holds them too (its status counts committed and uncommitted chunks).
    await waitFor(
      async () =>
        ((
          await e2e.cluster.api<{ workers: { id: string; status: { chunks: number } }[] }>('GET', '/workers')
        ).body.workers.find((w) => w.id === 'w4')?.status.chunks ?? 0) >= 14,
      {
        what: 'w4 to report its chunks',
      },
    );
  });

  it('drains a live worker with reads and a POST running: no read loses or repeats a row, the worker ends empty and retired', async () => {
    const before = await counts(['w1', 'w2', 'w3', 'w4']);
    const must = ref([...base, ...second]);
    // Rows of the POST made during the drain: a read may see them (at most once) as soon as
    // they commit, and must see them once the POST answered.
    const may = ref(during);
    const readers = [0, 1, 2].map(
      () =>
        new ReaderLoop(
          () => [e2e.cluster.url, url2],
          () => must,
          () => may,
        ),
    );
    await new Promise((r) => setTimeout(r, 500));
    const pauser = new Pauser(() => ['w1', 'w3', 'w4', 'w2'].map((w) => e2e.cluster.workers.get(w)!.child.pid));
    const t0 = Date.now();
    const res = await runCli(e2e.cluster.url, ['worker', 'drain', 'w2', '--timeout', '120']).finally(() =>
      pauser.stop(),
    );
    const drainMs = Date.now() - t0;
    assert.equal(res.code, 0, res.out);
    assert.match(res.out, /w2 drained and retired/);
    // A POST during the drain: none of its chunks may land on w2.
    const midPost = await post(during);
    for (const r of during) must.set(r._id, canonical(r));
    const results = await Promise.all(readers.map((r) => r.stop()));
    const reads = results.reduce((n, r) => n + r.reads, 0);
    const failures = results.flatMap((r) => r.failures);
    assert.deepEqual(failures, [], `${failures.length} of ${reads} reads were not exact`);
    assert.ok(reads >= 3, `only ${reads} reads ran`);
    const p = await placements();
    assert.equal([...p.values()].filter((m) => m.replicas.includes('w2')).length, 0, 'no chunk is placed on w2');
    assert.equal([...p.values()].filter((m) => m.post === midPost && m.replicas.includes('w2')).length, 0);
    assert.ok(
      [...p.values()].every((m) => m.replicas.length === 2),
      'every chunk keeps 2 copies',
    );
    assert.equal(await e2e.cluster.redis.scard(e2e.keys.workerChunks('w2')), 0);
    const ws = await e2e.cluster.api<{ workers: { id: string }[] }>('GET', '/workers');
    assert.deepEqual(
      ws.body.workers.map((w) => w.id),
      ['w1', 'w3', 'w4'],
      'w2 is retired: no longer listed',
    );
    const st = await e2e.cluster.api<{ state: string; chunks: number }>('GET', '/workers/w2/drain');
    assert.deepEqual(st.body, { worker: 'w2', state: 'retired', chunks: 0 });
    // The retired process holds nothing: its shard dropped every chunk.
    await waitFor(
      async () => {
        const h = await e2e.cluster.redis.hget(e2e.keys.workerStatus, 'w2');
        return h && (JSON.parse(h) as { chunks: number }).chunks === 0;
      },
      { what: 'w2 to report 0 chunks in its shard', timeoutMs: 10_000 },
    );
    const rows = await e2e.cluster.query<Row>('t');
    assert.equal(checkRead(rows, must), undefined);
    console.log(
      `      drain of w2 (${before.w2} chunks) took ${(drainMs / 1000).toFixed(1)} s; ${reads} exact reads ran meanwhile`,
    );
  });

  it('rebalances onto a new worker with reads running: counts end within 1, every read exact', async () => {
    const must = ref([...base, ...second, ...during]);
    await post(late);
    for (const r of late) must.set(r._id, canonical(r));
    e2e.cluster.startWorker('w5');
    // w2 is retired (no longer listed), though its process still runs.
    await e2e.cluster.waitLive(['w1', 'w3', 'w4', 'w5']);
    const before = await counts(['w1', 'w3', 'w4', 'w5']);
    assert.equal(before.w5, 0);
    const readers = [0, 1, 2].map(
      () =>
        new ReaderLoop(
          () => [e2e.cluster.url, url2],
          () => must,
          () => new Map(),
        ),
    );
    await new Promise((r) => setTimeout(r, 500));
    const pauser = new Pauser(() => ['w1', 'w3', 'w4', 'w5'].map((w) => e2e.cluster.workers.get(w)!.child.pid));
    const t0 = Date.now();
    const res = await runCli(url2, ['rebalance', '--timeout', '120']).finally(() => pauser.stop());
    const ms = Date.now() - t0;
    assert.equal(res.code, 0, res.out);
    const results = await Promise.all(readers.map((r) => r.stop()));
    const reads = results.reduce((n, r) => n + r.reads, 0);
    const failures = results.flatMap((r) => r.failures);
    assert.deepEqual(failures, [], `${failures.length} of ${reads} reads were not exact`);
    const after = await counts(['w1', 'w3', 'w4', 'w5']);
    const n = Object.values(after);
    // The plan moves a chunk from the fullest to the emptiest while they differ by 2 or
    // more, and a chunk the emptiest lacks always exists then: at most 1 apart.
    assert.ok(
      Math.max(...n) - Math.min(...n) <= 1,
      `counts after rebalance: ${JSON.stringify(after)} (before ${JSON.stringify(before)})`,
    );
    assert.equal(
      n.reduce((a, b) => a + b, 0),
      Object.values(before).reduce((a, b) => a + b, 0),
      'copies are moved, not added or lost',
    );
    const p = await placements();
    assert.ok([...p.values()].every((m) => m.replicas.length === 2 && new Set(m.replicas).size === 2));
    const rows = await e2e.cluster.query<Row>('t');
    assert.equal(checkRead(rows, must), undefined);
    const moved = before.w5 === 0 ? after.w5 : 0;
    console.log(
      `      rebalance moved ${moved} chunks onto w5 in ${(ms / 1000).toFixed(1)} s (${JSON.stringify(before)} -> ${JSON.stringify(after)}); ${reads} exact reads ran meanwhile`,
    );
  });
});

describe('e2e: drain refusals and forced drains (2 workers, R = 2)', function () {
  this.timeout(120_000);
  const rows = makeRows(2000, 3);

  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '250', DSTORE_SWEEP_MS: '300' } });

  before(async () => {
    await e2e.cluster.api('PUT', '/tables/t');
    const r = await e2e.cluster.api('POST', '/tables/t/records', ndjson(rows), 'application/x-ndjson');
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  it('answers an unknown worker id with 404 over HTTP and one line with exit code 1 from the CLI', async () => {
    const r = await e2e.cluster.api<{ error: string; message: string }>('POST', '/workers/nope/drain', {});
    assert.equal(r.status, 404);
    assert.match(r.body.message, /no worker "nope"; known workers: w1, w2/);
    const bad = await e2e.cluster.api<{ error: string }>('POST', '/workers/a%20b/drain', {});
    assert.equal(bad.status, 400);
    const res = await runCli(e2e.cluster.url, ['worker', 'drain', 'nope']);
    assert.equal(res.code, 1);
    assert.equal(res.out.trim(), 'dstore: no worker "nope"; known workers: w1, w2 (see dstore workers)');
  });

  it('refuses a drain that would leave chunks with fewer than R copies unless forced', async () => {
    const res = await runCli(e2e.cluster.url, ['worker', 'drain', 'w1']);
    assert.equal(res.code, 1);
    assert.match(
      res.out,
      /^dstore: draining w1 would leave chunks with fewer than DSTORE_REPLICAS=2 copies: only 1 other live worker\(s\) \(w2\)/,
    );
    assert.equal(await e2e.cluster.redis.hlen(e2e.keys.draining), 0, 'nothing was marked');
    const forced = await runCli(e2e.cluster.url, ['worker', 'drain', 'w1', '--force', '--timeout', '60']);
    assert.equal(forced.code, 0, forced.out);
    const got = await e2e.cluster.query<Row>('t');
    assert.equal(checkRead(got, new Map(rows.map((r) => [r._id, canonical(r)]))), undefined);
    const metas = Object.values(await e2e.cluster.redis.hgetall(e2e.keys.chunks)).map(
      (v) => JSON.parse(v) as { replicas: string[] },
    );
    assert.ok(
      metas.length > 0 && metas.every((m) => m.replicas.length === 1 && m.replicas[0] === 'w2'),
      JSON.stringify(metas),
    );
  });

  it('never drains the last worker, even forced, and says so', async () => {
    const res = await runCli(e2e.cluster.url, ['worker', 'drain', 'w2', '--force']);
    assert.equal(res.code, 1);
    assert.match(res.out, /^dstore: cannot drain w2: no other live worker could take its chunks/);
    const again = await runCli(e2e.cluster.url, ['worker', 'drain', 'w1']);
    assert.equal(again.code, 1);
    assert.match(again.out, /^dstore: worker w1 was already drained and retired/);
  });
});
