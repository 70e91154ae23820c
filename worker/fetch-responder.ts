import type Redis from 'ioredis';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import {
  chunkSetOf,
  chunkSetToken,
  decodeFetch,
  type DigestMessage,
  type FetchChannelMessage,
  type FetchMessage,
} from '../common/messages';
import { normalizeQuery, withAfter, type QuerySpec } from '../common/query';
import { subscribe, type DstoreRedis } from '../common/redis';
import { AnswerSender } from './answer-sender';
import { planFetch } from './fetch-query';
import type { OpsConsumer } from './ops-consumer';
import { ReadClosed, ReadCredits } from './read-credit';
import { awaitFence } from './read-fence';
import { updatedDoc, type ShardReader, type ShardStore } from './shard-store';
import type { BackupSnapshots } from './backup-snapshots';

/** The token of a held set, per set object (the store's is cached until its next write). */
const tokens = new WeakMap<ReadonlySet<string>, string>();

function tokenOf(held: ReadonlySet<string>): string {
  let t = tokens.get(held);
  if (t === undefined) tokens.set(held, (t = chunkSetToken(held)));
  return t;
}

/** Options of {@link FetchResponder}. */
export interface FetchResponderOptions {
  workerId: string;
  keys: Keys;
  batchRows: number;
  batchBytes: number;
  /** Requests served at once; more wait their turn. @defaultValue 4 */
  concurrency?: number;
  /** The backups' read snapshots, for FETCHes that name one. */
  snapshots?: Pick<BackupSnapshots, 'use'>;
}

/**
 * Answers the FETCH and DIGEST requests on this worker's own fetch channel. A request names
 * exactly the chunks this worker answers for (the coordinator chose one replica per chunk);
 * if it does not hold one of them committed, a FETCH gets nothing but `missing` with the
 * list, and the coordinator asks another replica. Before reading it waits for the read fence
 * ({@link awaitFence}), so a read sees every write acked before it. Rows go back in batches
 * ({@link AnswerSender}, flow-controlled by {@link ReadCredits}); the batches name the chunks
 * they complete and the last one completes the rest, so the coordinator can check that every
 * chunk was answered once.
 */
export class FetchResponder {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private stopped = false;
  /** Running totals since this process started, reported in the heartbeat. */
  readonly counters = { fetchRequests: 0, fetches: 0, fetchRows: 0 };
  private unsubscribe?: () => Promise<void>;
  private readonly credits = new ReadCredits();

  constructor(
    private readonly sub: Redis,
    private readonly cmd: DstoreRedis,
    private readonly store: ShardStore,
    private readonly consumer: OpsConsumer,
    private readonly opts: FetchResponderOptions,
    private readonly log: Logger,
  ) {}

  /** Subscribes to this worker's fetch channel (FETCH, DIGEST and read credit). */
  async start(): Promise<void> {
    this.unsubscribe = await subscribe(this.sub, this.opts.keys.workerFetch(this.opts.workerId), (payload) =>
      this.onMessage(payload),
    );
  }

  /** Stops taking requests and waits for the ones in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.credits.closeAll();
    await Promise.allSettled([...this.inflight]);
    await this.unsubscribe?.();
  }

  private onMessage(payload: string): void {
    let msg: FetchChannelMessage;
    try {
      msg = decodeFetch(payload);
    } catch (e) {
      // Without a valid request id and reply stream there is no one to tell.
      this.log.warn({ reason: (e as Error).message }, 'ignored an invalid message on the fetch channel');
      return;
    }
    if (msg.worker !== this.opts.workerId) return;
    if (msg.type === 'FETCH_CREDIT') return this.credits.onCredit(msg);
    if (this.stopped) return;
    if (!this.opts.keys.isCoordReplies(msg.replyTo)) {
      this.log.warn({ replyTo: msg.replyTo }, 'ignored a request whose replyTo is not a coordinator reply stream');
      return;
    }
    if (msg.type === 'FETCH') this.counters.fetchRequests++;
    const p = this.serve(msg).catch((e) => this.log.error({ err: e, req: msg.req }, 'answering a request failed'));
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async serve(msg: FetchMessage | DigestMessage): Promise<void> {
    const opened = msg.type === 'FETCH' && msg.window ? this.credits.open(msg.req, msg.window) : undefined;
    try {
      await this.turn();
      try {
        if (this.credits.isClosed(msg.req)) return;
        await this.answer(msg);
      } finally {
        this.release();
      }
    } finally {
      this.credits.close(msg.req, opened);
    }
  }

  private async answer(msg: FetchMessage | DigestMessage): Promise<void> {
    const started = Date.now();
    const out = new AnswerSender(this.cmd, this.credits, {
      req: msg.req,
      replyTo: msg.replyTo,
      worker: this.opts.workerId,
      kind: msg.type === 'DIGEST' ? 'digest' : 'rows',
      timeoutMs: msg.timeoutMs,
    });
    if (!this.consumer.ready)
      return this.fail(msg, out, { code: 'not-ready', error: 'worker is still applying its ops backlog' });
    const unreached = await awaitFence(
      { ...this.opts, cmd: this.cmd, consumer: this.consumer },
      msg.tail,
      Math.max(50, Math.floor(msg.timeoutMs / 2)),
    );
    if (unreached)
      return this.fail(msg, out, {
        code: 'lagging',
        error: `worker has not applied its ops stream up to ${unreached}`,
      });
    if (msg.type === 'DIGEST') return this.answerDigests(msg, out);
    let q: QuerySpec;
    try {
      q = normalizeQuery({
        where: msg.where,
        fields: msg.fields,
        sort: msg.sort,
        limit: msg.limit,
        aggregate: msg.aggregate,
        groupBy: msg.groupBy,
      });
      if (msg.after !== undefined) q = withAfter(q, msg.after);
    } catch (e) {
      return this.fail(msg, out, { code: 'bad-request', error: (e as Error).message });
    }
    if (msg.snapshot !== undefined) return this.answerSnapshot(msg, q, msg.snapshot, out);
    // A connection of its own: its snapshot starts now, after the fence (see ShardReader).
    const reader = this.store.acquireReader();
    try {
      const rows = await this.answerRows(msg, q, reader, out);
      if (rows === undefined) return;
      this.counters.fetches++;
      this.counters.fetchRows += rows;
      this.log.debug(
        {
          req: msg.req,
          table: msg.table,
          rows,
          chunks: chunkSetOf(msg.chunks) ?? msg.chunks.length,
          ms: Date.now() - started,
        },
        'answered FETCH',
      );
    } catch (e) {
      if (e instanceof ReadClosed) return;
      return this.fail(msg, out, { code: 'failed', error: (e as Error).message });
    } finally {
      this.store.releaseReader(reader);
    }
  }

  /** A backup's FETCH: the rows as of its cut, from the snapshot its BACKUP entry began. */
  private async answerSnapshot(msg: FetchMessage, q: QuerySpec, backup: string, out: AnswerSender): Promise<void> {
    try {
      const done = await this.opts.snapshots?.use(backup, (reader) => this.answerRows(msg, q, reader, out, true));
      if (done === undefined)
        return this.fail(msg, out, {
          code: 'no-snapshot',
          error: `worker holds no snapshot of backup ${backup} (it restarted since the backup's cut, or the backup ended)`,
        });
      if (done.value !== undefined) this.counters.fetchRows += done.value;
    } catch (e) {
      if (e instanceof ReadClosed) return;
      return this.fail(msg, out, { code: 'failed', error: (e as Error).message });
    }
  }

  /**
   * Streams the rows of exactly the chunks asked; returns how many, or undefined when it
   * answered `missing` or `unlisted`.
   */
  private async answerRows(
    msg: FetchMessage,
    q: QuerySpec,
    reader: ShardReader,
    out: AnswerSender,
    snapshot = false,
  ): Promise<number | undefined> {
    // Only what this worker holds committed now, the state the reader's snapshot starts from
    // (a backup's snapshot: what it held committed at the cut).
    const held = snapshot ? reader.committedChunks(msg.table) : this.store.committedChunks(msg.table);
    const set = chunkSetOf(msg.chunks);
    if (set !== undefined && tokenOf(held) !== set) {
      await this.fail(msg, out, {
        code: 'unlisted',
        error: `worker holds another set of ${held.size} committed chunks of ${msg.table} than the one asked (${set})`,
      });
      return undefined;
    }
    // Asked by token: every chunk held, exactly the set the token names.
    const asked = set === undefined ? msg.chunks : undefined;
    const missing = asked ? asked.filter((c) => !held.has(c)) : [];
    if (missing.length > 0) {
      await this.fail(msg, out, {
        code: 'missing',
        error: `worker does not hold ${missing.length} of the ${msg.chunks.length} chunks it was asked for`,
        missing,
      });
      return undefined;
    }
    const table = reader.readerTable(msg.table);
    out.setKind(q.aggregate ? 'agg' : q.sort ? 'sorted' : 'rows');
    let total = 0;
    let lines: string[] = [];
    let bytes = 0;
    // A batch names the chunks it completes; the last one completes the rest (those of its
    // own rows and those without a matching row) without naming them.
    const full = () => lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes;
    const flush = async (chunks?: string[]) => {
      await out.send({ lines, chunks, done: false });
      total += lines.length;
      lines = [];
      bytes = 0;
    };
    if (table && (asked ? asked.length : held.size) > 0) {
      // Asked for every committed chunk it holds: no chunk filter in the SQL.
      const plan = planFetch(
        table.ident,
        q,
        !asked || asked.length === held.size ? undefined : asked,
        snapshot ? undefined : this.store.indexedPaths(msg.table),
        msg.preview && updatedDoc(msg.preview),
      );
      if (msg.explain) {
        // The plan SQLite would run, instead of rows: one line naming each step (and any index).
        const steps = (
          reader.statement(`EXPLAIN QUERY PLAN ${plan.sql}`).all(...plan.params) as { detail: string }[]
        ).map((r) => r.detail);
        out.setKind('rows');
        await out.finish({ lines: [JSON.stringify({ sqlite: steps })] });
        return 1;
      }
      out.setKind(plan.mode);
      // Mode rows: a batch is cut only where one chunk ends and the next begins, and it
      // names the chunks it completes, so a retry can ask for exactly the missing ones.
      const done: string[] = [];
      let current: string | undefined;
      for (const row of reader.statement(plan.sql).iterate(...plan.params) as IterableIterator<
        Record<string, unknown>
      >) {
        if (plan.mode === 'rows' && row.chunk !== current) {
          if (current !== undefined) done.push(current);
          current = row.chunk as string;
          if (full()) await flush(done.splice(0));
        }
        const line = plan.line(row);
        lines.push(line);
        bytes += line.length;
        if (plan.mode !== 'rows' && full()) await flush();
      }
    }
    total += lines.length;
    await out.finish({ lines });
    return total;
  }

  /** Digests (scrub, repair, copy checks) of exactly the requested chunks, held or not. */
  private async answerDigests(msg: DigestMessage, out: AnswerSender): Promise<void> {
    let lines: string[] = [];
    let chunks: string[] = [];
    for (const d of this.store.digests(msg.chunks)) {
      lines.push(JSON.stringify(d));
      chunks.push(d.chunk);
      if (lines.length >= this.opts.batchRows) {
        await out.send({ lines, chunks, done: false });
        lines = [];
        chunks = [];
      }
    }
    await out.finish({ lines, chunks });
  }

  private async fail(
    msg: FetchMessage | DigestMessage,
    out: AnswerSender,
    f: Parameters<AnswerSender['fail']>[0],
  ): Promise<void> {
    // `unlisted` is routine (a commit since the read began): the coordinator asks again.
    this.log[f.code === 'unlisted' ? 'debug' : 'warn'](
      { req: msg.req, code: f.code, error: f.error, missing: f.missing?.slice(0, 5) },
      `${msg.type} not answered with rows`,
    );
    await out.fail(f);
  }

  private turn(): Promise<void> {
    if (this.active < (this.opts.concurrency ?? 4)) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(() => (this.active++, resolve())));
  }

  private release(): void {
    this.active--;
    this.queue.shift()?.();
  }
}
