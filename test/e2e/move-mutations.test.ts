import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { clusterSuite } from '../support/cluster';
import { canonical } from '../support/data';
import type { Row } from '../support/driver';
import { waitFor } from '../support/wait';

const ROWS = 3000;
/** Rows per chunk: `a` = i mod CHUNK, so every chunk holds exactly one row of each `a`. */
const CHUNK = 25;
/** Deletes remove 30 rows each (one `(a, b)` pair of 100); at most this many run. */
const MAX_DELETES = 30;

type Mutation =
  | { kind: 'update'; where: { a: number }; set: Record<string, number> }
  | { kind: 'delete'; where: { a: number; b: number } };

/**
 * Runs UPDATEs and DELETEs one at a time, alternating coordinators, and after each one
 * returns applies it to a plain-JS reference and reads the whole table: the answer must
 * equal the reference exactly (no mutation is in flight then, so there is no "before or
 * after"). Every UPDATE touches one row of every chunk (so every move races some write),
 * and writes a field no other UPDATE writes, so a lost update is never masked later.
 */
class Mutator {
  mutations = 0;
  reads = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly urls: string[],
    private readonly ref: Map<string, Row>,
    private readonly state: { next: number; deletes: number },
  ) {
    this.done = this.run();
  }

  private next(): Mutation {
    const i = this.state.next++;
    if (i % 5 === 4 && this.state.deletes < MAX_DELETES) {
      // (a, b) pairs without repeats: a = k mod 25, b = k mod 4 covers all 100 pairs.
      const k = this.state.deletes++ * 37;
      return { kind: 'delete', where: { a: k % CHUNK, b: k % 4 } };
    }
    return { kind: 'update', where: { a: i % CHUNK }, set: { v: i, [`u${i}`]: i % 997 } };
  }

  private async run(): Promise<void> {
    for (let n = 0; !this.stopped; n++) {
      const url = this.urls[n % this.urls.length];
      const m = this.next();
      const hits = [...this.ref.values()].filter((r) => Object.entries(m.where).every(([f, v]) => r[f] === v));
      try {
        const res = await fetch(`${url}/tables/t/records`, {
          method: m.kind === 'update' ? 'PATCH' : 'DELETE',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(m.kind === 'update' ? { where: m.where, set: m.set } : { where: m.where }),
        });
        const body = (await res.json()) as { updated?: number; deleted?: number };
        if (res.status !== 200) {
          this.failures.push(`${m.kind} ${JSON.stringify(m.where)}: HTTP ${res.status} ${JSON.stringify(body)}`);
          this.stopped = true; // the reference can no longer be trusted
          break;
        }
        const count = m.kind === 'update' ? body.updated : body.deleted;
        if (count !== hits.length)
          this.failures.push(
            `${m.kind} ${JSON.stringify(m.where)} changed ${count} rows, the reference ${hits.length}`,
          );
      } catch (e) {
        this.failures.push(`${m.kind}: ${(e as Error).message}`);
        this.stopped = true;
        break;
      }
      for (const r of hits) {
        if (m.kind === 'delete') this.ref.delete(r._id);
        else Object.assign(r, m.set);
      }
      this.mutations++;
      const bad = await readAndCompare(url, this.ref);
      if (bad) this.failures.push(`read after mutation ${this.state.next - 1} (${m.kind}): ${bad}`);
      this.reads++;
    }
  }

  async stop(): Promise<{ mutations: number; reads: number; failures: string[] }> {
    this.stopped = true;
    await this.done;
    return { mutations: this.mutations, reads: this.reads, failures: this.failures };
  }
}

/** Reads the whole table through `url`; describes the first few differences from `ref`, if any. */
async function readAndCompare(url: string, ref: Map<string, Row>): Promise<string | undefined> {
  const res = await fetch(`${url}/tables/t/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  const text = await res.text();
  if (res.status !== 200) return `HTTP ${res.status} ${text.slice(0, 300)}`;
  return diff(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row),
    ref,
  );
}

function diff(got: Row[], ref: Map<string, Row>): string | undefined {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const g of got) {
    if (seen.has(g._id)) problems.push(`${g._id} twice`);
    seen.add(g._id);
    const want = ref.get(g._id);
    if (!want) problems.push(`${g._id} should be deleted`);
    else if (canonical(want) !== canonical(g))
      problems.push(`${g._id} is ${canonical(g)}, expected ${canonical(want)}`);
  }
  for (const id of ref.keys()) if (!seen.has(id)) problems.push(`${id} missing`);
  return problems.length === 0
    ? undefined
    : `${problems.length} rows wrong (${got.length} read, ${ref.size} expected): ${problems.slice(0, 3).join('; ')}`;
}

describe('e2e: UPDATE and DELETE while chunks move (drain, rebalance, repair; 2 coordinators, R = 2)', function () {
  this.timeout(120_000);
  let urls: string[];
  const ref = new Map<string, Row>();
  const state = { next: 0, deletes: 0 };

  const e2e = clusterSuite({
    workers: 3,
    replicas: 2,
    env: { DSTORE_CHUNK_ROWS: String(CHUNK), DSTORE_SWEEP_MS: '300', DSTORE_REPAIR_AFTER_MS: '3000' },
  });

  before(async () => {
    const second = await e2e.cluster.spawnCoordinator('coordinator-2');
    urls = [e2e.cluster.url, second.url];
    await e2e.cluster.api('PUT', '/tables/t');
    const rows: Row[] = [];
    for (let i = 0; i < ROWS; i++) rows.push({ _id: `m${String(i).padStart(5, '0')}`, a: i % CHUNK, b: i % 4, v: -1 });
    const r = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      rows.map((x) => JSON.stringify(x)).join('\n'),
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const x of rows) ref.set(x._id, { ...x });
  });

  /** Runs `moves` with the mutator going; asserts every read was exact and some mutations ran. */
  async function whileMutating(what: string, moves: () => Promise<void>): Promise<void> {
    const m = new Mutator(urls, ref, state);
    const t0 = Date.now();
    let out: Awaited<ReturnType<Mutator['stop']>>;
    try {
      await moves();
    } finally {
      out = await m.stop();
    }
    // The first failures say what went wrong; the rest repeat them (a stale copy stays stale).
    assert.deepEqual(
      out.failures.slice(0, 3),
      [],
      `${what}: ${out.failures.length} failures in ${out.mutations} mutations`,
    );
    assert.ok(out.mutations >= 3, `${what}: only ${out.mutations} mutations ran during the moves`);
    console.log(
      `      ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${out.mutations} mutations each followed by an exact read`,
    );
    const final = await readAndCompare(urls[0], ref);
    assert.equal(final, undefined, `${what}: the table after the moves`);
  }

  it('drains a worker: every read after each mutation and the final table equal the reference', async () => {
    const held = await e2e.cluster.redis.scard(e2e.keys.workerChunks('w2'));
    assert.ok(held > 50, `w2 holds ${held} chunks`);
    await whileMutating('drain of w2', async () => {
      const r = await e2e.cluster.api('POST', '/workers/w2/drain', {});
      assert.equal(r.status, 202, JSON.stringify(r.body));
      await waitFor(
        async () => (await e2e.cluster.api<{ state: string }>('GET', '/workers/w2/drain')).body.state === 'retired',
        { what: 'w2 to be retired', timeoutMs: 60_000 },
      );
    });
  });

  it('rebalances onto a new worker: same checks', async () => {
    e2e.cluster.startWorker('w4');
    await e2e.cluster.waitLive(['w1', 'w3', 'w4']);
    await whileMutating('rebalance onto w4', async () => {
      const r = await e2e.cluster.api<{ moves: unknown[] }>('POST', '/rebalance', {});
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.ok(r.body.moves.length > 20, `${r.body.moves.length} moves planned`);
      await waitFor(async () => (await e2e.cluster.api<{ pending: number }>('GET', '/rebalance')).body.pending === 0, {
        what: 'the rebalance to finish',
        timeoutMs: 60_000,
      });
    });
    assert.ok((await e2e.cluster.redis.scard(e2e.keys.workerChunks('w4'))) > 20);
  });

  it('repairs the chunks of a lost worker: same checks', async () => {
    const w1 = e2e.cluster.workers.get('w1')!;
    w1.child.kill('SIGKILL');
    await w1.child.exited;
    // Mutations wait for live workers: start once w1 is no longer live, before repair starts.
    await e2e.cluster.waitLive(['w3', 'w4']);
    await whileMutating('repair of w1', async () => {
      await waitFor(
        async () => {
          const all = Object.values(await e2e.cluster.redis.hgetall(e2e.keys.chunks)).map(
            (v) => (JSON.parse(v) as { replicas: string[] }).replicas,
          );
          return all.every((r) => r.length === 2 && !r.includes('w1'));
        },
        { what: 'every chunk back at 2 copies without w1', timeoutMs: 60_000 },
      );
    });
  });
});
