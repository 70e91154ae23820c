/**
 * Fault-injection suite: for each fault, a fresh cluster (3 workers, R = 2) on its own Redis
 * with AOF, a load of acknowledged writes while the fault is injected, and a full read once
 * the system has recovered. Every acknowledged row must be there exactly once with its value.
 * Figures go to an aligned table on stdout and to test/faults/results.json.
 *
 *   npm run test:faults        (FAULTS_VERBOSE=1 prints every failed POST attempt)
 */
import 'reflect-metadata';
import { makeKeys } from '../../common/keys';
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { startCluster, type TestCluster } from '../support/cluster';
import { lossAndDuplicates } from '../support/data';
import type { IndexList } from '../../cli/commands/index-cmd';
import type { ReadExplain } from '../../coordinator/fetch-merger';
import type { ScrubReport } from '../../coordinator/jobs/scrub';
import type { Row } from '../support/driver';
import type { ChildHandle } from '../support/processes';
import { startRedis, uniquePrefix, type TestRedis } from '../support/redis';
import { scrubReportsSince } from '../support/scrub-reports';
import { sleep, waitFor } from '../support/wait';
import { compare, Load, probeRecovery, readAll } from './load';
import { formatNotes, formatTable, writeResults, type FaultResult } from './report';

const TABLE = 't';
/** The fault is injected once this many batches are acknowledged. */
const FAULT_AFTER_BATCHES = 8;
/**
 * Pause of each of the 2 load lanes between batches: 30 batches then take ~10 s, so the load
 * goes on well past each fault's window (5 s SIGSTOP, 3 s until a restart, repair).
 */
const LOAD_GAP_MS = 600;
/** The fault waits (up to 5 s) for a POST that has been in flight this long. */
const IN_FLIGHT_MIN_MS = 30;
/** How long after the fault a complete, exact read may take to appear. */
const RECOVERY_DEADLINE_MS = 90_000;

const BASE_ENV: Record<string, string> = {
  DSTORE_HEARTBEAT_MS: '200',
  DSTORE_WORKER_TIMEOUT_MS: '1500',
  DSTORE_FETCH_TIMEOUT_MS: '2000',
  DSTORE_REPAIR_AFTER_MS: '3000',
  DSTORE_SWEEP_MS: '300',
  DSTORE_COORDINATOR_TIMEOUT_MS: '1500',
  DSTORE_ACK_TIMEOUT_MS: '5000',
  DSTORE_CHUNK_ROWS: '500',
  DSTORE_REPLICAS: '2',
  DSTORE_MIN_REPLICAS: '1',
};

/** What a fault's steps can use. */
interface Ctx {
  name: string;
  redis: TestRedis;
  cluster: TestCluster;
  prefix: string;
  load: Load;
  notes: string[];
  /** Time the fault counts from (set by inject). */
  t0: number;
  /** Processes killed on purpose: their exit is not a failure. */
  expectedDead: Set<ChildHandle>;
  cancelled: boolean;
  log(msg: string): void;
}

interface FaultPlan {
  env?: Record<string, string>;
  /** Injects the fault while the load runs; returns the time the fault counts from. */
  inject(c: Ctx): Promise<number>;
  /** Runs after inject, while the load goes on (e.g. restarts what was killed). */
  recover?(c: Ctx): Promise<void>;
  /** Only reads taken while this holds count for the recovery time. */
  ready?(c: Ctx): Promise<boolean>;
  /** After the load and the recovery probe, before the final read. */
  settle?(c: Ctx): Promise<void>;
  /** After the final read: further checks, which may add to the figures. */
  extra?(c: Ctx, r: FaultResult): Promise<void>;
  /** Synchronous clean-up before the cluster is stopped (e.g. SIGCONT). */
  cleanup?(c: Ctx): void;
}

const results: FaultResult[] = [];
const verbose = process.env.FAULTS_VERBOSE === '1';

function worker(c: Ctx, id: string): ChildHandle {
  const w = c.cluster.workers.get(id);
  if (!w) throw new Error(`no worker ${id}`);
  return w.child;
}

async function killHard(c: Ctx, id: string): Promise<void> {
  const h = worker(c, id);
  c.expectedDead.add(h);
  h.kill('SIGKILL');
  await h.exited;
}

async function isLive(c: Ctx, id: string): Promise<boolean> {
  const r = await c.cluster.api<{ workers: { id: string; live: boolean }[] }>('GET', '/workers');
  return r.status === 200 && r.body.workers.some((w) => w.id === id && w.live);
}

/** Chunk id → replicas, from `<prefix>:chunks`. */
async function placements(c: Ctx): Promise<Map<string, { replicas: string[]; rows: number; post: string }>> {
  const all = await c.cluster.redis.hgetall(makeKeys(c.prefix).chunks);
  return new Map(
    Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as { replicas: string[]; rows: number; post: string }]),
  );
}

async function bounded<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

let seed = 0;

async function runFault(name: string, plan: FaultPlan): Promise<FaultResult> {
  const started = Date.now();
  const result: FaultResult = {
    fault: name,
    ackedRows: 0,
    lost: 0,
    duplicated: 0,
    wrong: 0,
    recoverMs: null,
    failedPosts: 0,
    ambiguous: 0,
    ambiguousRowsVisible: 0,
    ambiguousPartial: 0,
    ambiguousStuck: 0,
    phantom: 0,
    batches: { acked: 0, failed: 0, ambiguous: 0, rejected: 0, pending: 0 },
    elapsedMs: 0,
    notes: [],
  };
  results.push(result);
  const log = (msg: string) => console.log(`      [${name}] ${msg}`);
  let redis: TestRedis | undefined;
  let cluster: TestCluster | undefined;
  let c: Ctx | undefined;
  let loading: Promise<void> | undefined;
  let probing: Promise<unknown> | undefined;
  try {
    redis = await startRedis({ appendonly: true });
    const prefix = uniquePrefix();
    cluster = await startCluster({
      redisUrl: redis.url,
      prefix,
      workers: 3,
      replicas: 2,
      env: { ...BASE_ENV, ...plan.env },
    });
    cluster.redis.on('error', () => undefined); // the Redis restart fault: ioredis reconnects by itself
    const put = await cluster.api('PUT', `/tables/${TABLE}`);
    assert.ok(
      put.status === 201 || put.status === 200,
      `PUT /tables/${TABLE}: ${put.status} ${JSON.stringify(put.body)}`,
    );
    const cl = cluster;
    const load = new Load({
      url: () => cl.url,
      table: TABLE,
      idPrefix: `f${++seed}`,
      seed,
      gapMs: LOAD_GAP_MS,
      log: verbose ? log : undefined,
    });
    c = {
      name,
      redis,
      cluster,
      prefix,
      load,
      notes: result.notes,
      t0: 0,
      expectedDead: new Set(),
      cancelled: false,
      log,
    };
    const ctx = c;

    loading = load.run();
    await load.waitAcked(FAULT_AFTER_BATCHES, 60_000);
    // Hit a POST in the middle of placing its chunks.
    const hit = await load.waitInFlight(IN_FLIGHT_MIN_MS, 5_000);
    ctx.t0 = await plan.inject(ctx);
    const at = hit ? `while batch ${hit.batch} was ${hit.ageMs} ms in flight` : 'with no POST in flight';
    result.notes.push(`fault injected after ${load.count('acked')} acked batches, ${at}`);
    log(`fault injected after ${load.count('acked')} acked batches, ${at}`);
    const probe = probeRecovery({
      url: () => cl.url,
      table: TABLE,
      load,
      t0: ctx.t0,
      deadlineMs: RECOVERY_DEADLINE_MS,
      ready: plan.ready ? () => plan.ready!(ctx) : undefined,
      cancelled: () => ctx.cancelled,
    });
    probing = probe;
    await plan.recover?.(ctx);
    await loading;
    log(
      `load done: ${load.count('acked')} acked, ${load.count('failed')} failed, ${load.count('ambiguous')} ambiguous, ${load.count('rejected')} rejected batches`,
    );
    const span = load.span();
    const lat = load.latency();
    result.notes.push(
      `load ran from ${span.start - ctx.t0} to +${span.end - ctx.t0} ms around the fault; POST answered 200 in median ${lat.median} ms, max ${lat.max} ms`,
    );
    const pr = await probe;
    result.recoverMs = pr.recoverMs;
    result.notes.push(
      `recovery probe: ${pr.reads} full reads (${pr.failedReads} failed, ${pr.inexactReads} inexact)` +
        (pr.recoverMs === null
          ? `; no exact read within ${RECOVERY_DEADLINE_MS} ms; last: ${pr.last}`
          : pr.last
            ? `; last bad: ${pr.last}`
            : ''),
    );
    await plan.settle?.(ctx);

    // The final, complete read once the system has recovered.
    const final = await waitFor(
      async () => {
        const r = await readAll(cl.url, TABLE, {}, 20_000);
        if (!r.ok) throw new Error(r.why);
        return r;
      },
      { what: 'a complete full read', timeoutMs: 60_000, intervalMs: 300 },
    );
    const f = compare(load, final.rows);
    Object.assign(result, {
      lost: f.lost,
      duplicated: f.duplicated,
      wrong: f.wrong,
      phantom: f.phantom,
      ambiguousRowsVisible: f.ambiguousVisible,
    });
    result.notes.push(`final read: ${final.rows.length} rows in ${final.ms} ms`);
    if (f.phantom > 0)
      result.notes.push(
        `${f.phantom} rows of never-acknowledged (failed/rejected) batches are visible (counted in duplicated)`,
      );
    if (f.ambiguousVisible > 0 || load.count('ambiguous') > 0) {
      result.notes.push(
        `ambiguous batches: ${load.count('ambiguous')}; their rows visible: ${f.ambiguousVisible}, extra copies among them: ${f.ambiguousDuplicated}`,
      );
      for (const a of load.ambiguousDetail(final.rows)) {
        const what =
          a.visible === a.rows
            ? 'stored whole (the failed attempt had committed; the 409s were right)'
            : a.visible === 0
              ? 'STUCK: none of its rows is visible, yet every retry got 409 "duplicate _id" — the _ids can never be stored'
              : 'PARTLY VISIBLE: a POST must be stored whole or not at all';
        if (a.visible > 0 && a.visible < a.rows) result.ambiguousPartial++;
        if (a.visible === 0) result.ambiguousStuck++;
        result.notes.push(
          `ambiguous batch ${a.batch}: ${a.visible}/${a.rows} rows visible, retries got 409 for ${a.conflictMs} ms: ${what}`,
        );
      }
    }

    // No process may have died unless we killed it.
    const handles = [cl.coordinator, ...[...cl.workers.values()].map((w) => w.child)];
    for (const h of handles) {
      if (!ctx.expectedDead.has(h) && (h.child.exitCode !== null || h.child.signalCode !== null)) {
        throw new Error(
          `${h.name} (pid ${h.pid}) exited unexpectedly (${h.child.exitCode ?? h.child.signalCode}):\n${h.tail(15)}`,
        );
      }
    }
    await plan.extra?.(ctx, result);
  } catch (e) {
    result.error = (e as Error).message;
    log(`ERROR ${result.error}`);
  } finally {
    if (c) {
      c.cancelled = true;
      c.load.stop();
      const load = c.load;
      result.ackedRows = load.ackedRows().length;
      result.failedPosts = load.failedPosts();
      result.ambiguous = load.count('ambiguous');
      result.batches = {
        acked: load.count('acked'),
        failed: load.count('failed'),
        ambiguous: load.count('ambiguous'),
        rejected: load.count('rejected'),
        pending: load.count('pending'),
      };
      result.notes.push(...load.troubles());
      try {
        plan.cleanup?.(c);
      } catch (e) {
        result.notes.push(`cleanup: ${(e as Error).message}`);
      }
    }
    await bounded(Promise.allSettled([loading, probing]), 30_000);
    await cluster?.stop().catch((e) => result.notes.push(`cluster.stop: ${(e as Error).message}`));
    await redis?.stop().catch((e) => result.notes.push(`redis.stop: ${(e as Error).message}`));
    result.elapsedMs = Date.now() - started;
  }
  return result;
}

function assertClean(r: FaultResult): void {
  const detail = `\n${formatNotes([r])}`;
  assert.equal(r.error, undefined, `the fault run did not complete: ${r.error}${detail}`);
  assert.ok(r.ackedRows > 0, `no acknowledged rows${detail}`);
  assert.deepEqual(
    { lost: r.lost, duplicated: r.duplicated, wrong: r.wrong },
    { lost: 0, duplicated: 0, wrong: 0 },
    `acknowledged rows lost, duplicated or altered${detail}`,
  );
  assert.equal(r.ambiguousPartial, 0, `an ambiguous POST is partly visible${detail}`);
  assert.notEqual(
    r.recoverMs,
    null,
    `no complete, exact full read within ${RECOVERY_DEADLINE_MS} ms of the fault${detail}`,
  );
}

describe('faults: acknowledged writes survive injected faults (3 workers, R = 2)', function () {
  this.timeout(200_000);

  after(function () {
    if (results.length === 0) return;
    console.log(`\n${formatTable(results)}\n\n${formatNotes(results)}\n`);
    console.log(`written to ${writeResults(results)}`);
  });

  it('1. worker SIGKILL during the load, restarted on its data dir', async () => {
    const r = await runFault('worker SIGKILL', {
      async inject(c) {
        const t0 = Date.now();
        await killHard(c, 'w1');
        return t0;
      },
      async recover(c) {
        await sleep(3000);
        c.cluster.startWorker('w1');
        c.notes.push(`w1 restarted ${Date.now() - c.t0} ms after SIGKILL`);
      },
      async settle(c) {
        await c.cluster.waitLive(['w1', 'w2', 'w3']);
      },
    });
    assertClean(r);
  });

  it('2. worker SIGSTOP for 5 s during the load, then SIGCONT', async () => {
    const r = await runFault('worker SIGSTOP 5s', {
      async inject(c) {
        const t0 = Date.now();
        worker(c, 'w2').kill('SIGSTOP');
        return t0;
      },
      async recover(c) {
        await sleep(5000);
        worker(c, 'w2').kill('SIGCONT');
        c.notes.push(`w2 resumed ${Date.now() - c.t0} ms after SIGSTOP`);
      },
      async settle(c) {
        await c.cluster.waitLive(['w1', 'w2', 'w3']);
      },
      cleanup(c) {
        worker(c, 'w2').kill('SIGCONT');
      },
    });
    assertClean(r);
    // minReplicas = 1 and one worker stopped: every chunk has a live replica to ack it.
    assert.equal(
      r.batches.acked,
      30,
      `every batch must be acknowledged while one replica is stopped\n${formatNotes([r])}`,
    );
  });

  it('3. worker lost for good: repair restores R copies, then a second worker dies', async () => {
    const r = await runFault('worker lost + repair', {
      async inject(c) {
        const t0 = Date.now();
        await killHard(c, 'w2');
        return t0;
      },
      async settle(c) {
        const n = await waitFor(
          async () => {
            const p = [...(await placements(c)).values()];
            return p.length > 0 && p.every((m) => m.replicas.length === 2 && !m.replicas.includes('w2'))
              ? p.length
              : undefined;
          },
          { what: 'every chunk at 2 replicas without w2 (repair)', timeoutMs: 60_000, intervalMs: 200 },
        );
        c.notes.push(
          `repair: all ${n} chunks at 2 replicas without w2, seen ${Date.now() - c.t0} ms after the kill (polled after the load)`,
        );
        const under = await c.cluster.redis.zcard(makeKeys(c.prefix).underReplicated);
        if (under > 0) c.notes.push(`${under} chunks still listed in chunks:under-replicated`);
        await killHard(c, 'w1');
        await c.cluster.waitLive(['w3']);
        c.notes.push('w1 SIGKILLed after repair; the final read is served by w3 alone');
      },
    });
    assertClean(r);
  });

  it('4. coordinator SIGKILL during the load, restarted on a new port', async () => {
    const r = await runFault('coordinator SIGKILL', {
      async inject(c) {
        const h = c.cluster.coordinator;
        c.expectedDead.add(h);
        const t0 = Date.now();
        h.kill('SIGKILL');
        await h.exited;
        return t0;
      },
      async recover(c) {
        await c.cluster.startCoordinator();
        c.notes.push(`new coordinator answered /healthz ${Date.now() - c.t0} ms after SIGKILL (${c.cluster.url})`);
      },
      async settle(c) {
        await c.cluster.waitLive(['w1', 'w2', 'w3']);
        await waitFor(async () => (await c.cluster.redis.hlen(makeKeys(c.prefix).openPosts)) === 0, {
          what: 'clean-up to close every abandoned POST',
          timeoutMs: 30_000,
        });
      },
    });
    assertClean(r);
  });

  it('5. Redis SIGKILL + restart (AOF) during the load', async () => {
    const r = await runFault('redis restart', {
      async inject(c) {
        const fsync = (await c.cluster.redis.config('GET', 'appendfsync')) as string[];
        const aof = (await c.cluster.redis.config('GET', 'appendonly')) as string[];
        c.notes.push(`redis ${aof.join('=')} ${fsync.join('=')}: no acknowledged write may be lost`);
        // An index declared while the load runs must outlive the restart (catalogue and shards).
        const ix = await c.cluster.api('PUT', `/tables/${TABLE}/indexes/by_city`, { fields: ['city'] });
        assert.equal(ix.status, 201, JSON.stringify(ix.body));
        const t0 = Date.now();
        await c.redis.restart!();
        c.notes.push(`redis answered PING again ${Date.now() - t0} ms after SIGKILL`);
        return t0;
      },
      async settle(c) {
        await c.cluster.waitLive(['w1', 'w2', 'w3']);
        const h = await c.cluster.api<{ ok: boolean; liveWorkers: number }>('GET', '/healthz');
        c.notes.push(`after the restart: healthz ${JSON.stringify(h.body)}`);
      },
      async extra(c, res) {
        const listed = await waitFor(
          async () => {
            const r = await c.cluster.api<IndexList>('GET', `/tables/${TABLE}/indexes`);
            const st = r.body.indexes?.find((i) => i.name === 'by_city')?.workers ?? {};
            return ['w1', 'w2', 'w3'].every((w) => st[w]?.state === 'ready') ? r.body : undefined;
          },
          { what: 'index by_city ready on every worker after the Redis restart', timeoutMs: 30_000 },
        );
        assert.deepEqual(listed.indexes.find((i) => i.name === 'by_city')!.fields, ['city']);
        const all = await readAll(c.cluster.url, TABLE, {}, 20_000);
        if (!all.ok) throw new Error(all.why);
        const city = all.rows[0].city;
        const [{ explain }] = await c.cluster.query<{ explain: ReadExplain }>(TABLE, {
          where: { city },
          explain: true,
        });
        for (const w of explain.workers)
          assert.match((w.sqlite ?? []).join(' | '), /USING INDEX t_\d+_ix_by_city/, JSON.stringify(w));
        const byIndex = (await c.cluster.query<Row>(TABLE, { where: { city } })).map((r) => r._id).sort();
        const want = all.rows
          .filter((r) => r.city === city)
          .map((r) => r._id)
          .sort();
        const wrong = byIndex.length === want.length && byIndex.every((x, i) => x === want[i]) ? 0 : 1;
        c.notes.push(
          `after the restart: index by_city ready on w1-w3; a read by city on it gave ${byIndex.length} rows, the full read ${want.length}`,
        );
        res.wrong += wrong;
      },
    });
    assertClean(r);
  });

  it("6. silent corruption of one replica's shard, repaired by scrub", async () => {
    let reports: ScrubReport[] = [];
    let liveSince: number | undefined;
    const r = await runFault('shard corruption + scrub', {
      // The fault is a corrupt copy, not a lost worker: w2 must come back as the holder of its
      // copies. Repair's 3 s (BASE_ENV) is shorter than a SIGTERM, the edit and a restart on a
      // loaded machine, and then moves w2's chunks away before scrub could see them.
      env: { DSTORE_SCRUB_MS: '1000', DSTORE_REPAIR_AFTER_MS: '120000' },
      async inject(c) {
        const h = worker(c, 'w2');
        const dataDir = c.cluster.workers.get('w2')!.dataDir;
        c.expectedDead.add(h);
        const down = Date.now();
        await h.stop();
        const db = new Database(path.join(dataDir, 'shard.sqlite'));
        let altered: number;
        try {
          const seq = (db.prepare('SELECT seq FROM _tables WHERE name = ?').get(TABLE) as { seq: number }).seq;
          altered = db.prepare(`UPDATE t_${seq} SET doc = json_set(doc, '$.n', -1) WHERE rowid % 7 = 0`).run().changes;
        } finally {
          db.close();
        }
        assert.ok(altered > 0, 'no row of w2 was altered');
        const t0 = Date.now();
        c.cluster.startWorker('w2');
        c.notes.push(
          `w2 stopped (SIGTERM), ${altered} stored rows altered in place ($.n = -1), restarted after ${t0 - down} ms`,
        );
        return t0;
      },
      // The corruption only shows once w2 answers reads again: count reads from the moment
      // it has been live longer than the coordinator's live-list cache (250 ms).
      async ready(c) {
        if (!(await isLive(c, 'w2'))) {
          liveSince = undefined;
          return false;
        }
        liveSince ??= Date.now();
        return Date.now() - liveSince >= 500;
      },
      async settle(c) {
        await c.cluster.waitLive(['w1', 'w2', 'w3']);
        const loadEnd = Date.now();
        const keys = makeKeys(c.prefix);
        const since = c.t0 - 5_000;
        const clean = await waitFor(
          async () => {
            const all = (reports = await scrubReportsSince(c.cluster.redis, keys, since));
            const fix = all.find((x) => x.at >= c.t0 && x.rebuilt.some((b) => b.worker === 'w2'));
            if (!fix) return undefined;
            return all.find(
              (x) =>
                x.at > fix.at &&
                x.at > loadEnd &&
                x.corrupt.length === 0 &&
                x.divergent.length === 0 &&
                x.unchecked.length === 0,
            );
          },
          { what: "scrub to rebuild w2's copies, then a clean scrub pass", timeoutMs: 60_000, intervalMs: 200 },
        ).catch((e) => {
          const seen = reports.map(
            (x) =>
              `at+${x.at - c.t0}: copies ${x.copies}, corrupt ${x.corrupt.length}, divergent ${x.divergent.length}, rebuilt ${x.rebuilt.length}, unchecked [${x.unchecked}]`,
          );
          throw new Error(`${(e as Error).message}; scrub reports seen: ${seen.join('; ') || 'none'}`);
        });
        const all = reports.filter((x) => x.at >= c.t0);
        const corrupt = all.flatMap((x) => x.corrupt);
        const rebuilt = all.flatMap((x) => x.rebuilt);
        const firstFix = all.find((x) => x.rebuilt.length > 0)!;
        c.notes.push(
          `scrub: ${all.length} passes seen; corrupt copies flagged ${corrupt.length} (workers ${[...new Set(corrupt.map((x) => x.worker))].join(',')}), ` +
            `rebuilt ${rebuilt.length} (${[...new Set(rebuilt.map((x) => `${x.worker}<-${x.from}`))].join(',')}), divergent ${all.reduce((n, x) => n + x.divergent.length, 0)}; ` +
            `first rebuild in the pass at +${firstFix.at - c.t0} ms; clean pass at +${clean.at - c.t0} ms (${clean.copies} copies)`,
        );
        c.notes.push(
          `scrub passes (start relative to w2's restart/duration; copies; corrupt/rebuilt/divergent; unchecked): ` +
            reports
              .map(
                (x) =>
                  `${x.at - c.t0}/${x.ms}ms ${x.copies} ${x.corrupt.length}/${x.rebuilt.length}/${x.divergent.length} [${x.unchecked}]`,
              )
              .join(', '),
        );
        const others = corrupt.filter((x) => x.worker !== 'w2');
        if (others.length > 0)
          c.notes.push(`scrub flagged copies on other workers: ${JSON.stringify(others.slice(0, 5))}`);
      },
      async extra(c, res) {
        // Stronger: with only w2 live, every chunk it holds is answered from its own copy.
        await killHard(c, 'w1');
        await killHard(c, 'w3');
        await c.cluster.waitLive(['w2']);
        const held = [...(await placements(c)).values()]
          .filter((m) => m.replicas.includes('w2'))
          .reduce((n, m) => n + m.rows, 0);
        const all = c.load.batches.flatMap((b) => b.rows);
        const t = Date.now();
        let last = { rows: -1, duplicated: 0, wrong: 0, why: '' };
        let exact = false;
        while (Date.now() - t < 30_000 && !exact) {
          const rr = await readAll(c.cluster.url, TABLE, { partial: true }, 20_000, true);
          if (rr.ok) {
            const f = lossAndDuplicates(all, rr.rows);
            last = { rows: rr.rows.length, duplicated: f.duplicated, wrong: f.wrong, why: '' };
            exact = rr.rows.length === held && f.duplicated === 0 && f.wrong === 0;
          } else last.why = rr.why;
          if (!exact) await sleep(300);
        }
        c.notes.push(
          `read with only w2 live: ${last.rows} rows of the ${held} w2 holds, duplicated ${last.duplicated}, wrong ${last.wrong}` +
            (exact ? ` (exact after ${Date.now() - t} ms)` : ` — NOT exact within 30 s ${last.why}`),
        );
        res.wrong += last.wrong;
        res.duplicated += last.duplicated;
        if (last.rows >= 0 && last.rows < held) res.lost += held - last.rows;
        if (!exact && last.rows < 0) throw new Error(`no read succeeded with only w2 live: ${last.why}`);
      },
    });
    assertClean(r);
  });
});
