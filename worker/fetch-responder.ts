import type Redis from 'ioredis';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { buildRows, errorText, decodeFetch, FetchRespMessage, type FetchCreditMessage, type FetchErrorCode, type FetchMessage, type FetchMode } from '../common/messages';
import { normalizeQuery } from '../common/query';
import { subscribe, type DstoreRedis } from '../common/redis';
import { planFetch } from './fetch-query';
import type { OpsConsumer } from './ops-consumer';
import type { ShardReader, ShardStore } from './shard-store';

/** Options of {@link FetchResponder}. */
export interface FetchResponderOptions {
  workerId: string;
  keys: Keys;
  batchRows: number;
  batchBytes: number;
  /** FETCHes served at once; more wait their turn. @defaultValue 4 */
  concurrency?: number;
}

/** FETCH_RESP batches of one answer in flight at once (each up to DSTORE_FETCH_BATCH_BYTES). */
const SEND_WINDOW = 4;

/** Read credit of one FETCH being answered: batches `seq < granted` may be sent (-1: the read is over). */
interface Credit {
  granted: number;
  /** When the coordinator last sent credit (or the FETCH arrived). */
  heard: number;
  wake?: () => void;
}

/** The coordinator closed the read (limit reached, client gone, deadline): stop quietly. */
class ReadClosed extends Error {}

/**
 * Answers the FETCH requests on this worker's own fetch channel. A FETCH names exactly the
 * chunks this worker answers for (the coordinator chose one replica per chunk); if it does
 * not hold one of them committed, it answers nothing but `missing` with the list, and the
 * coordinator asks another replica. Before reading it waits until it has applied its ops
 * stream up to the read's fence, so a read sees every write acked before it. Rows stream
 * back in batches on the coordinator's reply stream; the batches name the chunks they
 * complete, and the last one (`done`) names the rest, so the coordinator can check that
 * every chunk was answered once.
 */
export class FetchResponder {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private stopped = false;
  /** Running totals since this process started, reported in the heartbeat. */
  readonly counters = { fetchRequests: 0, fetches: 0, fetchRows: 0 };
  private unsubscribe?: () => Promise<void>;
  /** Credit of the FETCHes with a window that this worker is answering, by request id. */
  private readonly credits = new Map<string, Credit>();

  constructor(
    private readonly sub: Redis,
    private readonly cmd: DstoreRedis,
    private readonly store: ShardStore,
    private readonly consumer: OpsConsumer,
    private readonly opts: FetchResponderOptions,
    private readonly log: Logger,
  ) {}

  /** Subscribes to this worker's fetch channel (FETCH and read credit). */
  async start(): Promise<void> {
    this.unsubscribe = await subscribe(this.sub, this.opts.keys.workerFetch(this.opts.workerId), (payload) => this.onMessage(payload));
  }

  /** Stops taking FETCHes and waits for the ones in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const c of this.credits.values()) (c.granted = -1), c.wake?.();
    await Promise.allSettled([...this.inflight]);
    await this.unsubscribe?.();
  }

  private onMessage(payload: string): void {
    let msg: FetchMessage | FetchCreditMessage;
    try {
      msg = decodeFetch(payload);
    } catch (e) {
      // Without a valid request id and reply stream there is no one to tell.
      this.log.warn({ reason: (e as Error).message }, 'ignored an invalid message on the fetch channel');
      return;
    }
    if (msg.worker !== this.opts.workerId) return;
    if (msg.type === 'FETCH_CREDIT') return this.onCredit(msg);
    if (this.stopped) return;
    const p = this.onFetch(msg).catch((e) => this.log.error({ err: e }, 'answering a FETCH failed'));
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async onFetch(msg: FetchMessage): Promise<void> {
    this.counters.fetchRequests++;
    if (!this.opts.keys.isCoordReplies(msg.replyTo)) {
      this.log.warn({ replyTo: msg.replyTo }, 'ignored a FETCH whose replyTo is not a coordinator reply stream');
      return;
    }
    // Registered before waiting for a turn, so a read closed meanwhile is not answered.
    if (msg.window) this.credits.set(msg.req, { granted: msg.window, heard: Date.now() });
    try {
      await this.turn();
      try {
        if (this.credits.get(msg.req)?.granted === -1) return;
        await this.answer(msg);
      } finally {
        this.release();
      }
    } finally {
      this.credits.delete(msg.req);
    }
  }

  /** Read credit: more batches may be sent, or (-1) none. */
  private onCredit(msg: FetchCreditMessage): void {
    const c = this.credits.get(msg.req);
    if (!c) return;
    c.heard = Date.now();
    if (msg.granted === -1 || msg.granted > c.granted) c.granted = msg.granted;
    c.wake?.();
  }

  /**
   * Waits until batch `seq` may be sent. Without credit for DSTORE_FETCH_TIMEOUT_MS the
   * coordinator is gone (it re-sends credit while it waits for a slow client).
   */
  private async credit(msg: FetchMessage, seq: number): Promise<void> {
    const c = this.credits.get(msg.req);
    if (!c) return;
    while (c.granted !== -1 && seq >= c.granted) {
      if (Date.now() - c.heard > msg.timeoutMs) throw new Error(`no read credit from the coordinator for ${msg.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(10, Math.min(1000, msg.timeoutMs / 4)));
        c.wake = () => (clearTimeout(timer), resolve());
      });
      c.wake = undefined;
    }
    if (c.granted === -1) throw new ReadClosed('the coordinator closed the read');
  }

  private async answer(msg: FetchMessage): Promise<void> {
    const started = Date.now();
    if (!this.consumer.ready) return this.fail(msg, 'not-ready', 'worker is still applying its ops backlog');
    // Fence: everything in our stream when the read began was written before it. The
    // coordinator sends our stream's tail as it read it after the read began (without it,
    // we read the tail now: later, so it covers at least as much).
    const last = msg.tail ?? (await this.cmd.xrevrange(this.opts.keys.workerOps(this.opts.workerId), '+', '-', 'COUNT', 1))[0]?.[0];
    if (last && last !== '0-0' && !(await this.consumer.waitApplied(last, Math.max(50, Math.floor(msg.timeoutMs / 2))))) {
      return this.fail(msg, 'lagging', `worker has not applied its ops stream up to ${last}`);
    }
    if (msg.digest) return this.answerDigests(msg);
    let q;
    try {
      q = normalizeQuery({ where: msg.where, fields: msg.fields, sort: msg.sort, limit: msg.limit, aggregate: msg.aggregate, groupBy: msg.groupBy });
    } catch (e) {
      return this.fail(msg, 'bad-request', (e as Error).message);
    }
    // A connection of its own: its snapshot starts now, after the fence (see ShardReader).
    const reader = this.store.acquireReader();
    try {
      await this.answerRows(msg, q, reader, started);
    } finally {
      this.store.releaseReader(reader);
    }
  }

  private async answerRows(msg: FetchMessage, q: ReturnType<typeof normalizeQuery>, reader: ShardReader, started: number): Promise<void> {
    // Only what this worker holds committed now, the state the reader's snapshot starts from.
    const held = this.store.committedChunks(msg.table);
    const missing = msg.chunks.filter((c) => !held.has(c));
    if (missing.length > 0) {
      return this.fail(msg, 'missing', `worker does not hold ${missing.length} of the ${msg.chunks.length} chunks it was asked for`, 0, missing);
    }
    const table = reader.readerTable(msg.table);
    let mode: FetchMode = q.aggregate ? 'agg' : q.sort ? 'sorted' : 'rows';
    let seq = 0;
    let total = 0;
    let lines: string[] = [];
    let bytes = 0;
    // Chunks named by a batch sent so far; the last batch names the rest: those of its own
    // rows and those without a matching row.
    const named = new Set<string>();
    if (table && msg.chunks.length > 0) {
      // Asked for every committed chunk it holds: no chunk filter in the SQL.
      const plan = planFetch(table.ident, q, msg.chunks.length === held.size ? undefined : msg.chunks);
      mode = plan.mode;
      // Mode rows: a batch is cut only where one chunk ends and the next begins, and it
      // names the chunks it completes, so a retry can ask for exactly the missing ones.
      const done: string[] = [];
      let current: string | undefined;
      const window = this.sendWindow(msg);
      const flush = async (chunks?: string[]) => {
        for (const c of chunks ?? []) named.add(c);
        await window.send({ seq: seq++, mode, rows: lines, chunks, done: false });
        total += lines.length;
        lines = [];
        bytes = 0;
      };
      try {
        for (const row of reader.statement(plan.sql).iterate(...plan.params) as IterableIterator<Record<string, unknown>>) {
          if (mode === 'rows' && row.chunk !== current) {
            if (current !== undefined) done.push(current);
            current = row.chunk as string;
            if (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes) await flush(done.splice(0));
          }
          const line = plan.line(row);
          lines.push(line);
          bytes += line.length;
          if (mode !== 'rows' && (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes)) await flush();
        }
        await window.drain();
        await this.credit(msg, seq);
      } catch (e) {
        await window.drain().catch(() => undefined);
        if (e instanceof ReadClosed) return;
        return this.fail(msg, 'failed', (e as Error).message, seq);
      }
    }
    total += lines.length;
    const rest = msg.chunks.filter((c) => !named.has(c));
    await this.send(msg, { seq: seq++, mode, rows: lines, chunks: rest, done: true });
    this.counters.fetches++;
    this.counters.fetchRows += total;
    this.log.debug({ req: msg.req, table: msg.table, rows: total, chunks: msg.chunks.length, ms: Date.now() - started }, 'answered FETCH');
  }

  /** Digests (scrub, repair, copy checks) of exactly the requested chunks, held or not. */
  private async answerDigests(msg: FetchMessage): Promise<void> {
    let seq = 0;
    let lines: string[] = [];
    let chunks: string[] = [];
    for (const d of this.store.digests(msg.chunks)) {
      lines.push(JSON.stringify(d));
      chunks.push(d.chunk);
      if (lines.length >= this.opts.batchRows) {
        await this.send(msg, { seq: seq++, mode: 'digest', rows: lines, chunks, done: false });
        lines = [];
        chunks = [];
      }
    }
    await this.send(msg, { seq, mode: 'digest', rows: lines, chunks, done: true });
  }

  private async send(
    msg: FetchMessage,
    part: { seq: number; mode: FetchMode; rows: string[]; chunks?: string[]; done: boolean; code?: FetchErrorCode; error?: string; missing?: string[] },
  ): Promise<void> {
    const resp = buildRows(FetchRespMessage, { req: msg.req, worker: this.opts.workerId, count: part.rows.length, ...part });
    await this.cmd.xadd(msg.replyTo, '*', ...resp.toArgs());
  }

  /**
   * Batches sent without waiting for each XADD's reply, at most SEND_WINDOW in flight: the
   * scan goes on while Redis takes the previous batch. One connection keeps them in order.
   */
  private sendWindow(msg: FetchMessage): { send(part: Parameters<FetchResponder['send']>[1]): Promise<void>; drain(): Promise<void> } {
    const pending: Promise<void>[] = [];
    let failure: unknown;
    const check = () => {
      if (failure) throw failure;
    };
    return {
      send: async (part) => {
        check();
        await this.credit(msg, part.seq);
        pending.push(this.send(msg, part).catch((e) => void (failure ??= e)));
        if (pending.length >= SEND_WINDOW) await pending.shift();
        check();
      },
      drain: async () => {
        await Promise.all(pending.splice(0));
        check();
      },
    };
  }

  private async fail(msg: FetchMessage, code: FetchErrorCode, error: string, seq = 0, missing?: string[]): Promise<void> {
    this.log.warn({ req: msg.req, code, error, missing: missing?.slice(0, 5) }, 'FETCH not answered with rows');
    await this.send(msg, { seq, mode: 'rows', rows: [], done: true, code, error: errorText(error), missing });
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
