/**
 * Runs one seed: a cluster on its own Redis, the seed's schedule with up to
 * {@link LANES} client operations in flight while faults are applied, every answer
 * checked against the model as it arrives, and at each quiesce step (and at the end) a
 * strict check of the whole table on a healed, quiet cluster.
 */
import { startRedis, uniquePrefix, type TestRedis } from '../support/redis';
import { sleep } from '../support/wait';
import { checkMutationCount, checkRead, checkStable, queryBody, type Problem, type ReadShape } from './checker';
import { NemesisCluster } from './faults';
import { Model, type Doc, type Possible, type Write } from './model';
import { Lanes } from './lanes';
import { checkReplicas } from './replicas';
import { describeAnswer, encodeRows, parseLines, send, type Answer } from './requests';
import {
  describeStep,
  makeSchedule,
  postRows,
  TABLE,
  TABLE_SCHEMA,
  updateSet,
  type FaultKind,
  type PostFormat,
  type Step,
} from './schedule';
import { emptyStats, type SeedResult } from './report';

/** The table's secondary indexes (reads filter on g, k, v, x and sort on k and v). */
const INDEXES: Record<string, string[]> = { by_g_k: ['g', 'k'], by_v: ['v'], by_x: ['x'] };

/** Client operations in flight at once. */
export const LANES = 3;
/** Pause between two steps. */
const STEP_GAP_MS = 40;
/** How long a quiesce waits for the cluster to settle, then for a complete read. */
const SETTLE_MS = 60_000;
const EXACT_READ_MS = 30_000;
const WORKERS = 4;
const REPLICAS = 2;

/** Settings of every process: short timeouts, as test/faults uses, and small chunks. */
export const NEMESIS_ENV: Record<string, string> = {
  DSTORE_HEARTBEAT_MS: '200',
  DSTORE_WORKER_TIMEOUT_MS: '1500',
  DSTORE_FETCH_TIMEOUT_MS: '2000',
  DSTORE_REPAIR_AFTER_MS: '3000',
  DSTORE_SWEEP_MS: '300',
  DSTORE_COORDINATOR_TIMEOUT_MS: '1500',
  DSTORE_ACK_TIMEOUT_MS: '5000',
  DSTORE_QUERY_TIMEOUT_MS: '20000',
  DSTORE_CHUNK_ROWS: '10',
  DSTORE_REPLICAS: String(REPLICAS),
  DSTORE_MIN_REPLICAS: '1',
};

/** Options of {@link runSeed}. */
export interface RunOptions {
  seed: number;
  steps: number;
  faults?: ReadonlySet<FaultKind>;
  formats?: readonly PostFormat[];
  /**
   * Go on after a failure (NEMESIS_KEEP_GOING=1): each strict check then takes what it read
   * as the new truth, so that later steps are checked against it and every distinct defect
   * of the seed is reported, each row once.
   */
  keepGoing?: boolean;
  /** Called with each step's line once it has an outcome (NEMESIS_VERBOSE=1 prints them). */
  onStep?: (line: string) => void;
}

/** One executed step, for the failure report. */
interface StepLog {
  index: number;
  text: string;
  outcome: string;
}

/**
 * Runs the first `steps` steps of a seed's schedule, then a final strict check. Never throws:
 * problems are in the result.
 */
export async function runSeed(o: RunOptions): Promise<SeedResult> {
  const run = new SeedRun(o);
  await run.run();
  return run.result;
}

class SeedRun {
  readonly result: SeedResult;
  private readonly model = new Model();
  private readonly lanes = new Lanes(LANES);
  private readonly log: StepLog[] = [];
  private nem!: NemesisCluster;
  private redis: TestRedis | undefined;
  private current = 0;
  /** `<kind>|<row>` of every row problem reported, so that a lost row is counted once. */
  private readonly reported = new Set<string>();
  /** rid → the `_id` the store generated for it, as first seen. */
  private readonly generatedIds = new Map<string, string>();

  constructor(private readonly o: RunOptions) {
    this.result = { seed: o.seed, steps: o.steps, stepsRun: 0, ms: 0, stats: emptyStats(), problems: [], notes: [] };
  }

  /** Records problems found at `step`; the first makes the run a failure. A row's problem of one kind counts once. */
  private fail(step: number, problems: Problem[]): void {
    const fresh = problems.filter((p) => {
      if (p.id === undefined) return true;
      const key = `${p.kind}|${p.id}`;
      if (this.reported.has(key)) return false;
      this.reported.add(key);
      return true;
    });
    if (fresh.length === 0) return;
    for (const p of fresh) this.result.stats.problems[p.kind] = (this.result.stats.problems[p.kind] ?? 0) + 1;
    this.result.problems.push(...fresh.map((p) => ({ ...p, step })));
    this.result.failure ??= { step, replaySteps: Math.max(step, this.current) + 1, log: [] };
  }

  async run(): Promise<void> {
    const started = Date.now();
    const steps = makeSchedule({
      seed: this.o.seed,
      steps: this.o.steps,
      workers: WORKERS,
      faults: this.o.faults,
      formats: this.o.formats,
    });
    try {
      this.redis = await startRedis({ appendonly: true });
      this.nem = await NemesisCluster.start({
        redis: this.redis,
        prefix: uniquePrefix(),
        workers: WORKERS,
        replicas: REPLICAS,
        env: NEMESIS_ENV,
      });
      const put = await send(`${this.nem.url(0)}/tables/${TABLE}`, 'PUT', JSON.stringify({ schema: TABLE_SCHEMA }));
      if (put.kind !== 'answered' || put.status >= 300) throw new Error(`PUT /tables/${TABLE}: ${describeAnswer(put)}`);
      // Secondary indexes on the fields reads filter and sort on, so every read also checks the
      // indexed plans, on workers that build them from SETUP_TABLE, a chunk or a copy.
      for (const [name, fields] of Object.entries(INDEXES)) {
        const ix = await send(`${this.nem.url(0)}/tables/${TABLE}/indexes/${name}`, 'PUT', JSON.stringify({ fields }));
        if (ix.kind !== 'answered' || ix.status >= 300)
          throw new Error(`PUT /tables/${TABLE}/indexes/${name}: ${describeAnswer(ix)}`);
      }
      for (let i = 0; i < steps.length && (!this.result.failure || this.o.keepGoing); i++) {
        this.current = i;
        await this.step(i, steps[i]);
        this.result.stepsRun = i + 1;
        await sleep(STEP_GAP_MS);
      }
      await this.lanes.idle();
      if (!this.result.failure || this.o.keepGoing) {
        const entry = { index: steps.length, text: 'final: heal everything, settle, check strictly', outcome: '' };
        this.log.push(entry);
        await this.quiesce(steps.length, entry);
      } else {
        await this.postMortem();
      }
    } catch (e) {
      this.fail(this.current, [{ kind: 'settle', detail: `the run stopped: ${(e as Error).stack ?? e}` }]);
    } finally {
      await this.lanes.idle().catch(() => undefined);
      if (this.result.failure)
        this.result.failure.log = this.log.map((l) => `#${l.index} ${l.text}${l.outcome ? ` → ${l.outcome}` : ''}`);
      if (this.nem) {
        this.result.stats.deadLetters = await this.nem.deadLetters();
        this.result.stats.staleUnderReplicated = await this.nem.underReplicated().then(
          (u) => u.gone,
          () => -1,
        );
      }
      await this.nem?.stop().catch((e) => this.result.notes.push(`cluster stop: ${(e as Error).message}`));
      await this.redis?.stop().catch((e) => this.result.notes.push(`redis stop: ${(e as Error).message}`));
      this.result.ms = Date.now() - started;
    }
  }

  private async step(i: number, s: Step): Promise<void> {
    const entry: StepLog = { index: i, text: describeStep(s, i), outcome: '' };
    this.log.push(entry);
    const done = () => this.o.onStep?.(`#${i} ${entry.text} → ${entry.outcome}`);
    const st = this.result.stats;
    switch (s.kind) {
      case 'post':
      case 'update':
      case 'delete':
      case 'read':
        await this.lanes.run(async () => {
          try {
            await this.client(i, s, entry);
          } catch (e) {
            this.fail(i, [{ kind: 'settle', detail: `harness error in step ${i}: ${(e as Error).stack ?? e}` }]);
          }
          done();
        });
        return;
      case 'fault':
        // A wipe on a quiet cluster only: docs/consistency.md allows losing a write whose one
        // acking worker loses its disk before the other replica has applied it.
        if (s.fault.op === 'wipe') {
          await this.lanes.idle();
          const { unmet } = await this.nem.settle(20_000);
          if (unmet.length > 0) {
            entry.outcome = `skipped: the cluster did not settle (${unmet.join('; ')})`;
            st.skippedFaults++;
            return done();
          }
        }
        try {
          entry.outcome = await this.nem.apply(s.fault);
        } catch (e) {
          entry.outcome = `failed: ${(e as Error).message}`;
          this.fail(i, [{ kind: 'settle', detail: `${entry.text} failed: ${(e as Error).message}` }]);
          return done();
        }
        if (!entry.outcome.startsWith('skipped')) st.faults[s.fault.op] = (st.faults[s.fault.op] ?? 0) + 1;
        else st.skippedFaults++;
        return done();
      case 'pause':
        await sleep(s.ms);
        entry.outcome = 'done';
        return done();
      case 'quiesce':
        await this.lanes.idle();
        await this.quiesce(i, entry);
        return done();
    }
  }

  /** Settles a write's model op from its answer; returns problems with the answer itself. */
  private settleWrite(op: number, a: Answer, t0: number, what: string, isPost: boolean): Problem[] {
    const st = this.result.stats;
    if (a.kind === 'refused') {
      this.model.reject(op);
      st.writes.refused++;
      return [];
    }
    if (a.kind === 'cut') {
      this.model.indeterminate(op);
      st.writes.indeterminate++;
      return [];
    }
    if (a.status === 200) {
      this.model.ack(op);
      st.writes.acked++;
      return [];
    }
    if (a.status >= 400 && a.status < 500 && isPost) {
      // The API's promise: a refused POST stored nothing, now or later.
      this.model.reject(op);
      st.writes.rejected++;
    } else {
      this.model.indeterminate(op);
      st.writes.indeterminate++;
    }
    if (a.status < 500)
      return [{ kind: 'status', detail: `${what} answered ${a.status} to a valid request: ${a.text.slice(0, 300)}` }];
    if (a.status === 500 && !this.nem.excuses500(t0))
      return [{ kind: 'status', detail: `${what} answered 500 (no Redis restart near it): ${a.text.slice(0, 300)}` }];
    return [];
  }

  private async client(
    i: number,
    s: Exclude<Step, { kind: 'fault' | 'pause' | 'quiesce' }>,
    entry: StepLog,
  ): Promise<void> {
    const st = this.result.stats;
    const url = this.nem.url(s.via);
    if (!url) {
      entry.outcome = 'not sent: no coordinator runs';
      if (s.kind === 'read') {
        st.reads.sent++;
        st.reads.cut++;
      } else st.writes.refused++;
      return;
    }
    const t0 = Date.now();
    const base = `${url}/tables/${TABLE}`;
    if (s.kind === 'read') {
      const obs = this.model.observe();
      const a =
        s.read.kind === 'get'
          ? await send(`${base}/records/${encodeURIComponent(s.read.id)}`, 'GET', undefined)
          : await send(`${base}/query`, 'POST', JSON.stringify(queryBody(s.read, s.partial)));
      const possible = this.model.close(obs);
      entry.outcome = describeAnswer(a);
      this.fail(i, this.checkReadAnswer(s.read, a, possible, t0));
      return;
    }
    let write: Write;
    let req: { method: string; path: string; body: string; contentType?: string };
    if (s.kind === 'post') {
      const docs = postRows(this.o.seed, i, s.rows, s.generatedIds);
      const { body, contentType } = encodeRows(docs, s.format, s.generatedIds);
      write = { kind: 'insert', docs };
      req = { method: 'POST', path: '/records', body, contentType };
      st.posts[s.format] = (st.posts[s.format] ?? 0) + 1;
    } else if (s.kind === 'update') {
      const set = updateSet(i, s.setsNote);
      write = { kind: 'update', where: s.where, set };
      req = { method: 'PATCH', path: '/records', body: JSON.stringify({ where: s.where, set }) };
      st.updates++;
    } else {
      write = { kind: 'delete', where: s.where };
      req = { method: 'DELETE', path: '/records', body: JSON.stringify({ where: s.where }) };
      st.deletes++;
    }
    const op = this.model.begin(write);
    const obs = this.model.observe(op);
    const a = await send(base + req.path, req.method, req.body, req.contentType);
    const possible = this.model.close(obs);
    entry.outcome = describeAnswer(a);
    const what = `${s.kind.toUpperCase()} (step ${i})`;
    const problems = this.settleWrite(op, a, t0, what, s.kind === 'post');
    if (a.kind === 'answered' && a.status === 200) {
      const body = JSON.parse(a.text) as Record<string, unknown>;
      if (s.kind === 'post') {
        if (body.inserted !== s.rows)
          problems.push({
            kind: 'count',
            detail: `${what} answered inserted=${JSON.stringify(body.inserted)} for ${s.rows} rows`,
          });
        if (Number(body.underReplicated) > 0) st.underReplicatedPosts++;
      } else {
        const pending = Array.isArray(body.pendingWorkers) && body.pendingWorkers.length > 0;
        if (pending) entry.outcome += ` pendingWorkers ${JSON.stringify(body.pendingWorkers)}`;
        const n = s.kind === 'update' ? body.updated : body.deleted;
        entry.outcome += ` (${s.kind === 'update' ? 'updated' : 'deleted'} ${n})`;
        problems.push(...checkMutationCount(possible, s.where, n, !pending, what));
      }
    }
    this.fail(i, problems);
  }

  private checkReadAnswer(shape: ReadShape, a: Answer, possible: Possible, t0: number): Problem[] {
    const st = this.result.stats;
    st.reads.sent++;
    if (a.kind !== 'answered') {
      st.reads.cut++;
      return [];
    }
    if (a.status === 503 || a.status === 504) {
      st.reads.unavailable++;
      return [];
    }
    if (shape.kind === 'get' && (a.status === 200 || a.status === 404))
      return this.checkGet(shape, a.status, a.text, possible);
    if (a.status !== 200) {
      st.reads.otherStatus++;
      if (a.status < 500 || (a.status === 500 && !this.nem.excuses500(t0)))
        return [{ kind: 'status', detail: `read ${shape.kind} answered ${a.status}: ${a.text.slice(0, 300)}` }];
      return [];
    }
    const parsed = parseLines(a.text);
    if (parsed.garbled)
      return [{ kind: 'status', detail: `read ${shape.kind} answered a line that is not JSON: ${parsed.garbled}` }];
    const complete = !parsed.partial && !parsed.error;
    if (parsed.partial) st.reads.partial++;
    if (parsed.error) st.reads.errorLine++;
    if (complete) st.reads.exact++;
    st.reads.checked[shape.kind] = (st.reads.checked[shape.kind] ?? 0) + 1;
    if (shape.kind === 'count' || shape.kind === 'group') return checkRead(possible, shape, parsed.lines, complete);
    const { rows, problems } = this.normalize(parsed.lines);
    return [...problems, ...checkRead(possible, shape, rows, complete)];
  }

  /** A `GET /records/:id` answer: 200 with the record, or 404 naming the id (no such record), both complete. */
  private checkGet(
    shape: Extract<ReadShape, { kind: 'get' }>,
    status: number,
    text: string,
    possible: Possible,
  ): Problem[] {
    const st = this.result.stats;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return [
        {
          kind: 'status',
          detail: `read get ${shape.id} answered ${status} with a body that is not JSON: ${text.slice(0, 200)}`,
        },
      ];
    }
    if (status === 404 && body.id !== shape.id)
      return [
        {
          kind: 'status',
          detail: `read get ${shape.id} answered 404 without naming the record: ${text.slice(0, 300)}`,
        },
      ];
    st.reads.exact++;
    st.reads.checked.get = (st.reads.checked.get ?? 0) + 1;
    const { rows, problems } = this.normalize(status === 200 ? [body] : []);
    return [...problems, ...checkRead(possible, shape, rows, true)];
  }

  /**
   * Rows as the model keys them: `_id` replaced by `rid`, after checking that a row the
   * client named has `_id` = `rid` and that a generated `_id` never changes.
   */
  private normalize(lines: readonly Record<string, unknown>[]): { rows: Doc[]; problems: Problem[] } {
    const problems: Problem[] = [];
    const rows = lines.map((line) => {
      const rid = line.rid;
      const id = line._id;
      if (typeof rid !== 'string') {
        problems.push({ kind: 'wrong', detail: `a row without rid: ${JSON.stringify(line).slice(0, 200)}` });
        return { ...line, _id: String(id) } as Doc;
      }
      if (rid.startsWith('g')) {
        const known = this.generatedIds.get(rid);
        if (typeof id !== 'string' || id === '' || (known !== undefined && known !== id)) {
          problems.push({
            kind: 'wrong',
            id: rid,
            detail: `row ${rid} has _id ${JSON.stringify(id)}${known ? `; it had ${known} before` : ''}`,
          });
        } else this.generatedIds.set(rid, id);
      } else if (id !== rid)
        problems.push({ kind: 'wrong', id: rid, detail: `row ${rid} has _id ${JSON.stringify(id)}` });
      return { ...line, _id: rid } as Doc;
    });
    return { rows, problems };
  }

  /** A complete read of the whole table through `via`, retried until one comes or the deadline passes. */
  private async exactRead(
    via: number,
    timeoutMs: number,
  ): Promise<{ rows?: Doc[]; problems: Problem[]; last: string }> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const url = this.nem.url(via);
      if (url) {
        const a = await send(`${url}/tables/${TABLE}/query`, 'POST', '{}');
        last = describeAnswer(a);
        if (a.kind === 'answered' && a.status === 200) {
          const p = parseLines(a.text);
          if (!p.partial && !p.error && !p.garbled) return { ...this.normalize(p.lines), last };
          last = `200 ending ${JSON.stringify(p.partial ?? p.error ?? p.garbled).slice(0, 200)}`;
        }
      }
      await sleep(300);
    }
    return { problems: [], last };
  }

  /**
   * Heals everything, waits for a quiet cluster, then checks strictly: a complete read
   * allowed by the model, equal to a second one, and replicas that agree. The model then
   * takes the read as the truth.
   */
  private async quiesce(i: number, entry: StepLog): Promise<void> {
    const st = this.result.stats;
    const t = Date.now();
    const problems: Problem[] = [];
    const healed = await this.nem.healAll();
    const settled = await this.nem.settle(SETTLE_MS);
    if (settled.unmet.length > 0)
      problems.push({
        kind: 'settle',
        detail: `not quiet ${SETTLE_MS / 1000} s after healing: ${settled.unmet.join('; ')}`,
      });
    problems.push(...this.nem.crashed().map((detail) => ({ kind: 'crash' as const, detail })));
    const first = await this.exactRead(0, EXACT_READ_MS);
    if (!first.rows) {
      problems.push({
        kind: 'settle',
        detail: `no complete read within ${EXACT_READ_MS / 1000} s of settling; last: ${first.last}`,
      });
      this.fail(i, problems);
      entry.outcome = `FAILED after ${Date.now() - t} ms`;
      return;
    }
    const readProblems = [
      ...first.problems,
      ...checkRead(this.model.now(), { kind: 'rows', where: {} }, first.rows, true),
    ];
    problems.push(...readProblems);
    if (readProblems.length > 0 && this.o.keepGoing) {
      // What was read becomes the truth, so that the steps after are judged on their own.
      const doubtful = new Set(readProblems.map((p) => p.id).filter((id): id is string => id !== undefined));
      this.model.settle(new Map(first.rows.filter((r) => this.model.has(r._id)).map((r) => [r._id, r])), doubtful);
    } else if (readProblems.length === 0) {
      const torn = this.model.settle(new Map(first.rows.map((r) => [r._id, r])));
      problems.push(...torn.map((detail) => ({ kind: 'torn' as const, detail })));
      const second = await this.exactRead(1, EXACT_READ_MS);
      if (!second.rows)
        problems.push({
          kind: 'settle',
          detail: `no second complete read within ${EXACT_READ_MS / 1000} s; last: ${second.last}`,
        });
      else problems.push(...second.problems, ...checkStable(first.rows, second.rows));
    }
    const rep = await this.checkReplicas(first.rows);
    problems.push(...rep.problems);
    st.quiesces++;
    st.finalRows = first.rows.length;
    st.chunksChecked += rep.chunks;
    const waited = settled.ms > 2000 ? ` (settled in ${settled.ms} ms, mostly waiting on: ${settled.waited})` : '';
    entry.outcome =
      `${problems.length === 0 ? 'ok' : 'FAILED'}: healed [${healed.join('; ') || 'nothing'}], ${first.rows.length} rows, ` +
      `${rep.chunks} chunks / ${rep.copies} copies compared, ${Date.now() - t} ms${waited}`;
    this.fail(i, problems);
  }

  /** Every chunk on R active workers whose SQLite files hold exactly the rows of `rows`. */
  private checkReplicas(rows: readonly Doc[]): ReturnType<typeof checkReplicas> {
    return checkReplicas(
      this.nem.cluster.redis,
      this.nem.keys,
      TABLE,
      this.nem.workerDirs(),
      REPLICAS,
      this.nem.activeWorkers().length,
      // The `_id`s the shards hold: the generated one for a row the client did not name.
      rows.map((r) => this.generatedIds.get(r._id) ?? r._id),
    );
  }

  /** After a failure: heal, settle and read once more, to say whether what went wrong lasts. */
  private async postMortem(): Promise<void> {
    try {
      await this.nem.healAll();
      const { unmet } = await this.nem.settle(30_000);
      const r = await this.exactRead(0, 20_000);
      if (!r.rows) {
        this.result.notes.push(
          `after healing${unmet.length ? ` (not quiet: ${unmet.join('; ')})` : ''}: no complete read (${r.last})`,
        );
        return;
      }
      const left = checkRead(this.model.now(), { kind: 'rows', where: {} }, r.rows, true);
      this.fail(
        this.result.stepsRun,
        left.map((p) => ({ ...p, detail: `after healing: ${p.detail}` })),
      );
      const byKind = new Map<string, number>();
      for (const p of left) byKind.set(p.kind, (byKind.get(p.kind) ?? 0) + 1);
      const counts = [...byKind].map(([k, n]) => `${n} ${k}`).join(', ');
      this.result.notes.push(
        `after healing and settling${unmet.length ? ` (still not quiet: ${unmet.join('; ')})` : ''}, a complete read of ${r.rows.length} rows ` +
          (left.length === 0 ? 'agrees with the model' : `still has ${counts}: e.g. ${left[0].detail}`),
      );
      const rep = await this.checkReplicas(r.rows);
      if (rep.problems.length > 0)
        this.result.notes.push(
          `replica check after healing: ${rep.problems.length} problem(s), e.g. ${rep.problems[0].detail}`,
        );
    } catch (e) {
      this.result.notes.push(`post-mortem failed: ${(e as Error).message}`);
    }
  }
}
