import type Redis from 'ioredis';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { decodeFetch, FetchRespMessage, type FetchMessage, type FetchMode } from '../common/messages';
import { normalizeQuery } from '../common/query';
import type { DstoreRedis } from '../common/redis';
import { planFetch } from './fetch-query';
import type { OpsConsumer } from './ops-consumer';
import type { ShardStore } from './shard-store';

/** Options of {@link FetchResponder}. */
export interface FetchResponderOptions {
  workerId: string;
  keys: Keys;
  batchRows: number;
  batchBytes: number;
  /** FETCHes served at once; more wait their turn. @defaultValue 4 */
  concurrency?: number;
}

type ErrorCode = NonNullable<FetchRespMessage['code']>;

/**
 * Answers FETCH requests published on the fetch channel. A worker answers only when
 * it is in the request's live set, and then only for the chunks where it is the first
 * live member of the chunk's replica list: with R copies, every chunk is answered
 * exactly once. Before reading it waits until it has applied every ops entry that was
 * in its stream when the FETCH arrived, so a read sees every write acked before it.
 * Rows stream back in batches on the coordinator's reply stream; the last has `done`.
 */
export class FetchResponder {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly sub: Redis,
    private readonly cmd: DstoreRedis,
    private readonly store: ShardStore,
    private readonly consumer: OpsConsumer,
    private readonly opts: FetchResponderOptions,
    private readonly log: Logger,
  ) {}

  /** Subscribes to the fetch channel. */
  async start(): Promise<void> {
    this.sub.on('message', (channel: string, payload: string) => {
      if (channel !== this.opts.keys.fetchChannel || this.stopped) return;
      const p = this.onFetch(payload).catch((e) => this.log.error({ err: e }, 'answering a FETCH failed'));
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    await this.sub.subscribe(this.opts.keys.fetchChannel);
  }

  /** Stops taking FETCHes and waits for the ones in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.sub.unsubscribe().catch(() => undefined);
    await Promise.allSettled([...this.inflight]);
  }

  private async onFetch(payload: string): Promise<void> {
    let msg: FetchMessage;
    try {
      msg = decodeFetch(payload);
    } catch (e) {
      // Without a valid request id and reply stream there is no one to tell.
      this.log.warn({ reason: (e as Error).message }, 'ignored an invalid FETCH');
      return;
    }
    if (!msg.live.includes(this.opts.workerId)) return;
    if (!msg.replyTo.startsWith(`${this.opts.keys.prefix}:coord:`)) {
      this.log.warn({ replyTo: msg.replyTo }, 'ignored a FETCH whose replyTo is not a coordinator reply stream');
      return;
    }
    await this.turn();
    try {
      await this.answer(msg);
    } finally {
      this.release();
    }
  }

  private async answer(msg: FetchMessage): Promise<void> {
    const started = Date.now();
    if (!this.consumer.ready) return this.fail(msg, 'not-ready', 'worker is still applying its ops backlog');
    // Fence: everything in our stream now was written before this FETCH was published.
    const last = (await this.cmd.xrevrange(this.opts.keys.workerOps(this.opts.workerId), '+', '-', 'COUNT', 1))[0]?.[0];
    if (last && !(await this.consumer.waitApplied(last, Math.max(50, Math.floor(msg.timeoutMs / 2))))) {
      return this.fail(msg, 'lagging', `worker has not applied its ops stream up to ${last}`);
    }
    if (msg.digest) return this.answerDigests(msg);
    let q;
    try {
      q = normalizeQuery({ where: msg.where, fields: msg.fields, sort: msg.sort, limit: msg.limit, aggregate: msg.aggregate, groupBy: msg.groupBy });
    } catch (e) {
      return this.fail(msg, 'bad-request', (e as Error).message);
    }
    const table = this.store.readerTable(msg.table);
    let mode: FetchMode = q.aggregate ? 'agg' : q.sort ? 'sorted' : 'rows';
    let seq = 0;
    let total = 0;
    if (table) {
      const mine = this.store.chunksOf(msg.table);
      const live = new Set(msg.live);
      const wanted = msg.chunks ? new Set(msg.chunks) : undefined;
      const answerFor = mine
        .filter((c) => (!wanted || wanted.has(c.chunk)) && c.replicas.find((r) => live.has(r)) === this.opts.workerId)
        .map((c) => c.chunk);
      if (answerFor.length > 0) {
        const plan = planFetch(table.ident, q, answerFor.length === mine.length ? undefined : answerFor);
        mode = plan.mode;
        let lines: string[] = [];
        let bytes = 0;
        // Mode rows: a batch is cut only where one chunk ends and the next begins, and it
        // names the chunks it completes, so a retry can ask for exactly the missing ones.
        const done: string[] = [];
        let current: string | undefined;
        try {
          for (const row of this.store.reader.prepare(plan.sql).iterate(...plan.params) as IterableIterator<Record<string, unknown>>) {
            if (mode === 'rows' && row.chunk !== current) {
              if (current !== undefined) done.push(current);
              current = row.chunk as string;
              if (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes) {
                await this.send(msg, { seq: seq++, mode, rows: lines, chunks: done.splice(0), done: false });
                total += lines.length;
                lines = [];
                bytes = 0;
              }
            }
            const line = plan.line(row);
            lines.push(line);
            bytes += line.length;
            if (mode !== 'rows' && (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes)) {
              await this.send(msg, { seq: seq++, mode, rows: lines, done: false });
              total += lines.length;
              lines = [];
              bytes = 0;
            }
          }
        } catch (e) {
          return this.fail(msg, 'failed', (e as Error).message, seq);
        }
        if (current !== undefined) done.push(current);
        total += lines.length;
        await this.send(msg, { seq: seq++, mode, rows: lines, chunks: mode === 'rows' ? done : undefined, done: true });
        this.log.debug({ req: msg.req, table: msg.table, rows: total, chunks: answerFor.length, ms: Date.now() - started }, 'answered FETCH');
        return;
      }
    }
    await this.send(msg, { seq, mode, rows: [], done: true });
  }

  /** Scrub: stored and recomputed digests of the requested chunks. */
  private async answerDigests(msg: FetchMessage): Promise<void> {
    let seq = 0;
    let lines: string[] = [];
    for (const d of this.store.digests(msg.chunks ?? [])) {
      lines.push(JSON.stringify({ c: d.chunk, s: d.stored, a: d.actual, e: d.error }));
      if (lines.length >= this.opts.batchRows) {
        await this.send(msg, { seq: seq++, mode: 'rows', rows: lines, done: false });
        lines = [];
      }
    }
    await this.send(msg, { seq, mode: 'rows', rows: lines, done: true });
  }

  private async send(
    msg: FetchMessage,
    part: { seq: number; mode: FetchMode; rows: string[]; chunks?: string[]; done: boolean; code?: ErrorCode; error?: string },
  ): Promise<void> {
    const resp = Object.assign(new FetchRespMessage(), { req: msg.req, worker: this.opts.workerId, count: part.rows.length, ...part });
    await this.cmd.xadd(msg.replyTo, '*', ...resp.toArgs());
  }

  private async fail(msg: FetchMessage, code: ErrorCode, error: string, seq = 0): Promise<void> {
    this.log.warn({ req: msg.req, code, error }, 'FETCH not answered with rows');
    await this.send(msg, { seq, mode: 'rows', rows: [], done: true, code, error });
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
