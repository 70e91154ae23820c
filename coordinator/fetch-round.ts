import { ulid } from 'ulid';
import type { Keys } from '../common/keys';
import { encodeFetch, FetchMessage, type FetchRespMessage } from '../common/messages';
import type { QuerySpec } from '../common/query';
import type { DstoreRedis } from '../common/redis';
import type { CoordinatorContext } from './context';

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
 */
export class FetchRound {
  readonly req = ulid();
  private readonly events: RoundEvent[] = [];
  private wake?: () => void;
  private readonly open: Set<string>;
  readonly failed = new Map<string, string>();
  private readonly nextSeq = new Map<string, number>();
  private readonly early = new Map<string, Map<number, FetchRespMessage>>();
  private readonly lastHeard = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly unlisten: () => void;
  private ended = false;

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
  ) {
    ({ cmd: this.cmd, keys: this.keys, replyTo: this.replyTo } = ctx);
    this.open = new Set(live);
    const now = Date.now();
    for (const w of live) this.lastHeard.set(w, now);
    this.unlisten = ctx.router.listen('req', this.req, (m) => m.type === 'FETCH_RESP' && this.onResp(m));
    this.timer = setInterval(() => this.checkSilence(), Math.max(20, Math.min(250, timeoutMs / 4)));
  }

  /** Publishes the FETCH. */
  async publish(): Promise<void> {
    const msg = Object.assign(new FetchMessage(), {
      req: this.req,
      replyTo: this.replyTo,
      table: this.table,
      live: [...this.live],
      timeoutMs: this.timeoutMs,
      chunks: this.chunks,
      ...this.query,
    });
    const receivers = await this.cmd.publish(this.keys.fetchChannel, encodeFetch(msg));
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

  /** Stops listening; late batches are dropped. */
  close(): void {
    clearInterval(this.timer);
    this.unlisten();
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
    if (!this.open.has(m.worker)) return;
    this.lastHeard.set(m.worker, Date.now());
    if (m.code) {
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
      if (now - (this.lastHeard.get(w) ?? now) > this.timeoutMs) this.failWorker(w, `no answer for DSTORE_FETCH_TIMEOUT_MS=${this.timeoutMs} ms`);
    }
  }
}
