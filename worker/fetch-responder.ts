import type Redis from 'ioredis';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { decodeFetch, FetchRespMessage, type FetchMessage, type FetchMode } from '../common/messages';
import { normalizeQuery } from '../common/query';
import { subscribe, type DstoreRedis } from '../common/redis';
import { planFetch } from './fetch-query';
import type { OpsConsumer } from './ops-consumer';
import { compareStreamIds } from '../common/stream-ids';
import { replicasAt, type HeldChunk, type ShardReader, type ShardStore } from './shard-store';

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
  /** Running totals since this process started, reported in the heartbeat. */
  readonly counters = { fetches: 0, fetchRows: 0 };
  private unsubscribe?: () => Promise<void>;
  private unsubscribeCredit?: () => Promise<void>;
  /** {@link answerFor} results per chunk list (a new list after every write) and live set. */
  private readonly answerMemo = new WeakMap<readonly HeldChunk[], { newest: string; byLive: Map<string, string[]> }>();
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

  /** Subscribes to the fetch channel. */
  async start(): Promise<void> {
    this.unsubscribeCredit = await subscribe(this.sub, this.opts.keys.fetchCreditChannel, (payload) => this.onCredit(payload));
    this.unsubscribe = await subscribe(this.sub, this.opts.keys.fetchChannel, (payload) => {
      if (this.stopped) return;
      const p = this.onFetch(payload).catch((e) => this.log.error({ err: e }, 'answering a FETCH failed'));
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
  }

  /** Stops taking FETCHes and waits for the ones in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.unsubscribe?.();
    for (const c of this.credits.values()) (c.granted = -1), c.wake?.();
    await Promise.allSettled([...this.inflight]);
    await this.unsubscribeCredit?.();
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

  /** `<req> <worker> <n>` on the credit channel: more batches may be sent, or (-1) none. */
  private onCredit(payload: string): void {
    const [req, worker, n] = payload.split(' ');
    const c = this.credits.get(req);
    if (!c || (worker !== this.opts.workerId && worker !== '*') || !/^(-1|\d+)$/.test(n ?? '')) return;
    c.heard = Date.now();
    const granted = Number(n);
    if (granted === -1 || granted > c.granted) c.granted = granted;
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
    // Fence: everything in our stream when the FETCH was published was written before it;
    // so was every move up to the FETCH's generation. The coordinator sends our stream's
    // tail as it read it just before publishing (without it, we read the tail now: later,
    // so it covers at least as much). The moves are read only when this worker has not
    // seen the read's generation yet: later moves do not change the lists it uses.
    const me = msg.tails ? msg.live.indexOf(this.opts.workerId) : -1;
    const cursor = this.store.movesCursor();
    const needMoves = !msg.gen || compareStreamIds(msg.gen, cursor) > 0;
    const [last, moves] = await Promise.all([
      me >= 0 && msg.tails!.length === msg.live.length
        ? msg.tails![me]
        : this.cmd.xrevrange(this.opts.keys.workerOps(this.opts.workerId), '+', '-', 'COUNT', 1).then((t) => t[0]?.[0]),
      needMoves ? this.cmd.xrange(this.opts.keys.moves, `(${cursor}`, '+') : ([] as [string, string[]][]),
    ]);
    this.applyMoves(moves);
    if (last && last !== '0-0' && !(await this.consumer.waitApplied(last, Math.max(50, Math.floor(msg.timeoutMs / 2))))) {
      return this.fail(msg, 'lagging', `worker has not applied its ops stream up to ${last}`);
    }
    if (msg.gen && !msg.digest && compareStreamIds(msg.gen, this.store.minGen()) < 0) {
      return this.fail(msg, 'stale', `read generation ${msg.gen} predates a move away from this worker (${this.store.minGen()}); ask again`);
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
    const table = reader.readerTable(msg.table);
    let mode: FetchMode = q.aggregate ? 'agg' : q.sort ? 'sorted' : 'rows';
    let seq = 0;
    let total = 0;
    if (table) {
      const mine = this.store.chunksOf(msg.table);
      const answerFor = this.answerFor(mine, msg);
      if (typeof answerFor === 'string') return this.fail(msg, 'stale', answerFor);
      if (answerFor.length > 0) {
        const plan = planFetch(table.ident, q, answerFor.length === mine.length ? undefined : answerFor);
        mode = plan.mode;
        let lines: string[] = [];
        let bytes = 0;
        // Mode rows: a batch is cut only where one chunk ends and the next begins, and it
        // names the chunks it completes, so a retry can ask for exactly the missing ones.
        const done: string[] = [];
        let current: string | undefined;
        const window = this.sendWindow(msg);
        try {
          for (const row of reader.statement(plan.sql).iterate(...plan.params) as IterableIterator<Record<string, unknown>>) {
            if (mode === 'rows' && row.chunk !== current) {
              if (current !== undefined) done.push(current);
              current = row.chunk as string;
              if (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes) {
                await window.send({ seq: seq++, mode, rows: lines, chunks: done.splice(0), done: false });
                total += lines.length;
                lines = [];
                bytes = 0;
              }
            }
            const line = plan.line(row);
            lines.push(line);
            bytes += line.length;
            if (mode !== 'rows' && (lines.length >= this.opts.batchRows || bytes >= this.opts.batchBytes)) {
              await window.send({ seq: seq++, mode, rows: lines, done: false });
              total += lines.length;
              lines = [];
              bytes = 0;
            }
          }
        } catch (e) {
          await window.drain().catch(() => undefined);
          if (e instanceof ReadClosed) return;
          return this.fail(msg, 'failed', (e as Error).message, seq);
        }
        await window.drain();
        if (current !== undefined) done.push(current);
        total += lines.length;
        try {
          await this.credit(msg, seq);
        } catch (e) {
          if (e instanceof ReadClosed) return;
          return this.fail(msg, 'failed', (e as Error).message, seq);
        }
        await this.send(msg, { seq: seq++, mode, rows: lines, chunks: mode === 'rows' ? done : undefined, done: true });
        this.counters.fetches++;
        this.counters.fetchRows += total;
        this.log.debug({ req: msg.req, table: msg.table, rows: total, chunks: answerFor.length, ms: Date.now() - started }, 'answered FETCH');
        return;
      }
    }
    await this.send(msg, { seq, mode, rows: [], done: true });
  }

  /**
   * The chunks of `mine` this worker answers for (it is their first live replica at the
   * read's generation), or why it cannot say (`stale`). Kept per chunk list and live set
   * while no chunk has a list newer than the read's generation: a point lookup on a big
   * table would otherwise walk every chunk, every time.
   */
  private answerFor(mine: readonly HeldChunk[], msg: FetchMessage): string[] | string {
    let memo = this.answerMemo.get(mine);
    if (!memo) {
      let newest = '0-0';
      for (const c of mine) if (compareStreamIds(c.since, newest) > 0) newest = c.since;
      memo = { newest, byLive: new Map() };
      this.answerMemo.set(mine, memo);
    }
    const cacheable = !msg.chunks && (msg.gen === undefined || compareStreamIds(msg.gen, memo.newest) >= 0);
    const key = msg.live.join(',');
    const hit = cacheable ? memo.byLive.get(key) : undefined;
    if (hit) return hit;
    const live = new Set(msg.live);
    const wanted = msg.chunks ? new Set(msg.chunks) : undefined;
    const out: string[] = [];
    for (const c of mine) {
      if (wanted && !wanted.has(c.chunk)) continue;
      const replicas = replicasAt(c, msg.gen);
      if (!replicas) return `chunk ${c.chunk} moved twice since read generation ${msg.gen}; ask again`;
      if (replicas.find((r) => live.has(r)) === this.opts.workerId) out.push(c.chunk);
    }
    if (cacheable) {
      if (memo.byLive.size >= 16) memo.byLive.clear();
      memo.byLive.set(key, out);
    }
    return out;
  }

  /** Installs replica lists of moves (`<prefix>:moves` entries) for the chunks held here. */
  private applyMoves(entries: [string, string[]][]): void {
    if (entries.length === 0) return;
    const parsed = entries.map(([id, f]) => {
      const m: Record<string, string> = {};
      for (let i = 0; i + 1 < f.length; i += 2) m[f[i]] = f[i + 1];
      return { id, chunk: m.chunk ?? '', replicas: (m.replicas ?? '').split(',').filter(Boolean) };
    });
    const n = this.store.applyMoves(parsed);
    if (n > 0) this.log.debug({ moves: parsed.length, applied: n }, 'applied chunk moves');
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
