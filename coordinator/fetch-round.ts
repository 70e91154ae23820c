import { randomUUID } from 'node:crypto';
import type { Keys } from '../common/keys';
import { encodeFetch, FetchMessage, type FetchRespMessage } from '../common/messages';
import type { QuerySpec } from '../common/query';
import { publish, type DstoreRedis } from '../common/redis';
import type { CoordinatorContext } from './context';

/**
 * Bytes of FETCH_RESP rows a coordinator holds that its readers have not taken yet, over
 * every read, and the most it ever held (`dstore_fetch_queued_bytes`, `…_peak`).
 */
export class FetchQueue {
  bytes = 0;
  peak = 0;

  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.peak) this.peak = this.bytes;
  }

  remove(n: number): void {
    this.bytes -= n;
  }
}

/** Flow control of a round: batches per worker not yet taken, and where they are counted. */
export interface FetchFlow {
  window: number;
  queue: FetchQueue;
}

function rowBytes(m: FetchRespMessage): number {
  let n = 0;
  for (const r of m.rows) n += r.length;
  return n;
}

/**
 * A read's fence: the generation (last id of the moves stream) and the tail of each
 * live worker's ops stream (`0-0` when empty), read before the FETCH is published.
 */
export interface Fence {
  live: readonly string[];
  gen: string;
  tails: string[];
}

/** Reads a {@link Fence} for `live`: commands issued together, one round trip. */
export async function readFence(cmd: DstoreRedis, keys: Keys, live: readonly string[]): Promise<Fence> {
  const last = (key: string) => cmd.xrevrange(key, '+', '-', 'COUNT', 1).then((r) => r[0]?.[0] ?? '0-0');
  const [gen, ...tails] = await Promise.all([last(keys.moves), ...live.map((w) => last(keys.workerOps(w)))]);
  return { live, gen, tails };
}

/** Why a worker left a round without finishing. */
export interface WorkerFailure {
  worker: string;
  reason: string;
}

/** Something that happened in a round, in arrival order. */
export type RoundEvent = { kind: 'batch'; resp: FetchRespMessage } | { kind: 'failed'; failure: WorkerFailure } | { kind: 'end' };

/**
 * One FETCH publication and the FETCH_RESP batches that answer it. Batches of each
 * worker are delivered in `seq` order. A worker that sends nothing for `timeoutMs`, or
 * answers with an error code, fails: its later batches are ignored, so a retry can ask
 * others for its share without duplicates. The round ends when every live worker has
 * sent `done` or failed.
 *
 * With a {@link FetchFlow}, a worker sends `window` batches and then waits for credit:
 * each batch the reader takes ({@link ack}) lets it send one more, so a slow client holds
 * at most `window` batches per worker here, however fast the workers scan. A worker
 * waiting for credit is not silent; while it waits, its credit is re-sent now and then
 * so it knows the read is still on.
 */
export class FetchRound {
  // Not a ulid: that draws 16 random values one by one, a visible cost per point lookup.
  readonly req = randomUUID();
  private readonly events: RoundEvent[] = [];
  private wake?: () => void;
  private readonly open: Set<string>;
  readonly failed = new Map<string, string>();
  /** Workers that refused the read's generation as too old (`stale`): asked again, not dropped. */
  readonly stale = new Set<string>();
  private readonly nextSeq = new Map<string, number>();
  private readonly early = new Map<string, Map<number, FetchRespMessage>>();
  private readonly lastHeard = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly unlisten: () => void;
  private ended = false;
  /** Batches of each worker the reader took, and the credit last sent to it. */
  private readonly taken = new Map<string, number>();
  private readonly granted = new Map<string, number>();
  private readonly grantedAt = new Map<string, number>();
  /** Bytes of rows received and not yet taken, in this round. */
  private held = 0;

  private readonly cmd: DstoreRedis;
  private readonly keys: Keys;
  private readonly replyTo: string;

  constructor(
    ctx: CoordinatorContext,
    readonly table: string,
    readonly live: readonly string[],
    private readonly query: QuerySpec & { digest?: boolean },
    private readonly timeoutMs: number,
    readonly chunks?: string[],
    private readonly flow?: FetchFlow,
  ) {
    ({ cmd: this.cmd, keys: this.keys, replyTo: this.replyTo } = ctx);
    this.open = new Set(live);
    const now = Date.now();
    for (const w of live) {
      this.lastHeard.set(w, now);
      this.grantedAt.set(w, now);
    }
    this.unlisten = ctx.router.listen('req', this.req, (m) => m.type === 'FETCH_RESP' && this.onResp(m));
    this.timer = setInterval(() => this.checkSilence(), Math.max(20, Math.min(250, timeoutMs / 4)));
  }

  /**
   * Publishes the FETCH, with the current generation (last id of the moves stream) and
   * the tail of each live worker's ops stream (its fence), read together: one round trip
   * here instead of one in every worker. A `fence` read earlier for the same live set
   * (see {@link FetchMerger.start}) is used as it is: older is fine, it is still after
   * the request arrived.
   */
  async publish(fence?: Fence): Promise<void> {
    const same = fence && fence.live.length === this.live.length && fence.live.every((w, i) => w === this.live[i]);
    const { gen, tails } = same ? fence : await readFence(this.cmd, this.keys, this.live);
    const msg = Object.assign(new FetchMessage(), {
      req: this.req,
      gen,
      tails,
      replyTo: this.replyTo,
      table: this.table,
      live: [...this.live],
      timeoutMs: this.timeoutMs,
      chunks: this.chunks,
      window: this.flow?.window,
      ...this.query,
    });
    const receivers = await publish(this.cmd, this.keys.fetchChannel, encodeFetch(msg));
    if (receivers === 0) for (const w of this.live) this.failWorker(w, 'no worker is subscribed to the fetch channel');
  }

  /** The next event; resolves `{kind: 'end'}` once, after every worker finished or failed. */
  async next(): Promise<RoundEvent> {
    for (;;) {
      const e = this.events.shift();
      if (e) return e;
      if (this.ended) return { kind: 'end' };
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /**
   * The reader took a batch (it was handed on, not only received): frees its bytes and
   * lets its worker send more. Credit goes out every half window, not per batch.
   */
  ack(resp: FetchRespMessage): void {
    const b = rowBytes(resp);
    this.held -= b;
    this.flow?.queue.remove(b);
    if (!this.flow) return;
    const w = resp.worker;
    const taken = (this.taken.get(w) ?? 0) + 1;
    this.taken.set(w, taken);
    if (!this.open.has(w) || this.ended) return;
    const grant = taken + this.flow.window;
    if (grant - (this.granted.get(w) ?? this.flow.window) >= Math.ceil(this.flow.window / 2)) this.grant(w, grant);
  }

  private grant(worker: string, n: number): void {
    this.granted.set(worker, n);
    this.grantedAt.set(worker, Date.now());
    publish(this.cmd, this.keys.fetchCreditChannel, `${this.req} ${worker} ${n}`).catch(() => undefined);
  }

  /** Stops listening; late batches are dropped, and workers still sending are told to stop. */
  close(): void {
    clearInterval(this.timer);
    this.unlisten();
    if (this.flow) {
      this.flow.queue.remove(this.held);
      this.held = 0;
      if (this.open.size > 0 && !this.ended) publish(this.cmd, this.keys.fetchCreditChannel, `${this.req} * -1`).catch(() => undefined);
    }
    this.ended = true;
    this.wake?.();
  }

  private push(e: RoundEvent): void {
    this.events.push(e);
    if (this.open.size === 0 && !this.ended) {
      this.ended = true;
      this.events.push({ kind: 'end' });
    }
    this.wake?.();
  }

  private onResp(m: FetchRespMessage): void {
    if (!this.open.has(m.worker) || this.ended) return;
    this.lastHeard.set(m.worker, Date.now());
    if (this.flow) {
      const b = rowBytes(m);
      this.held += b;
      this.flow.queue.add(b);
    }
    if (m.code) {
      if (m.code === 'stale') this.stale.add(m.worker);
      this.failWorker(m.worker, `${m.code}: ${m.error ?? ''}`);
      return;
    }
    // Batches arrive in order on one stream, but keep the order explicit anyway.
    const pending = this.early.get(m.worker) ?? new Map<number, FetchRespMessage>();
    pending.set(m.seq, m);
    this.early.set(m.worker, pending);
    let seq = this.nextSeq.get(m.worker) ?? 0;
    for (let r = pending.get(seq); r; r = pending.get(seq)) {
      pending.delete(seq);
      seq++;
      if (r.done) this.open.delete(r.worker);
      this.push({ kind: 'batch', resp: r });
    }
    this.nextSeq.set(m.worker, seq);
  }

  private failWorker(worker: string, reason: string): void {
    if (!this.open.delete(worker)) return;
    this.failed.set(worker, reason);
    this.push({ kind: 'failed', failure: { worker, reason } });
  }

  private checkSilence(): void {
    const now = Date.now();
    for (const w of [...this.open]) {
      if (this.flow && (this.nextSeq.get(w) ?? 0) >= (this.granted.get(w) ?? this.flow.window)) {
        // It sent all its credit allows and waits for the reader: not silent. Credit is
        // re-sent now and then so the worker knows the read is still on.
        this.lastHeard.set(w, now);
        if (now - (this.grantedAt.get(w) ?? now) > this.timeoutMs / 3) this.grant(w, this.granted.get(w) ?? this.flow.window);
        continue;
      }
      if (now - (this.lastHeard.get(w) ?? now) > this.timeoutMs) this.failWorker(w, `no answer for DSTORE_FETCH_TIMEOUT_MS=${this.timeoutMs} ms`);
    }
  }
}
