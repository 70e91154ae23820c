import { randomUUID } from 'node:crypto';
import type { Keys } from '../common/keys';
import {
  build,
  DigestMessage,
  encodeFetch,
  FetchCreditMessage,
  FetchMessage,
  type DigestRespMessage,
  type FetchErrorCode,
  type FetchRespMessage,
  type UpdatePreview,
} from '../common/messages';
import type { QuerySpec } from '../common/query';
import { isCluster, publish, type DstoreRedis } from '../common/redis';
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

/** A batch of an answer: rows of a FETCH, or digests of a DIGEST. */
export type AnswerBatch = FetchRespMessage | DigestRespMessage;

/** Characters of a batch's rows (or digest lines): what it holds in memory until taken. */
function rowBytes(m: AnswerBatch): number {
  if (m.type === 'FETCH_RESP') return m.rows.length;
  let n = 0;
  for (const r of m.digests) n += r.length;
  return n;
}

/** What a round asks: rows for a query (FETCH), or digests of chunks (DIGEST: scrub, repair, copy checks). */
export type RoundRequest =
  { query: QuerySpec; explain?: boolean; snapshot?: string; preview?: UpdatePreview } | { digest: true };

/** The chunks one worker answers for in a round. */
export interface Assignment {
  worker: string;
  chunks: readonly string[];
  /**
   * `chunks` are every chunk the placement puts on the worker, and this is their
   * `chunkSetToken` (common/messages): the FETCH names the token, not the list.
   */
  token?: string;
}

/** Why a worker left a round without finishing. */
export interface WorkerFailure {
  worker: string;
  /** The worker's code, or `timeout` (silent), or `protocol` (its answer did not add up). */
  code: FetchErrorCode | 'timeout' | 'protocol';
  reason: string;
  /** With code `missing`: the chunks it was asked for and does not hold committed. */
  missing?: string[];
}

/** Something that happened in a round, in arrival order. */
export type RoundEvent<R extends AnswerBatch = FetchRespMessage> =
  | {
      kind: 'batch';
      resp: R;
      /** The chunks this batch completes: those it names, and with `done` every other chunk its worker was asked. */
      completed: readonly string[];
    }
  | { kind: 'failed'; failure: WorkerFailure }
  | { kind: 'end' };

/**
 * A worker silent this long is probed: is its process still subscribed to its channel, and
 * still live? A SIGKILLed worker's connections close at once, so its read fails over in
 * well under a second instead of after DSTORE_FETCH_TIMEOUT_MS.
 */
export const PROBE_AFTER_MS = 250;

/** Options of a {@link FetchRound}. */
export interface FetchRoundOptions {
  /** How long a worker may stay silent before it fails (DSTORE_FETCH_TIMEOUT_MS). */
  timeoutMs: number;
  /** Flow control; absent: workers send without waiting for credit. */
  flow?: FetchFlow;
  /** Asked about a worker silent for {@link PROBE_AFTER_MS}; absent: only its channel is probed. */
  isLive?: (worker: string) => Promise<boolean>;
  /** Told how long each worker took, from publishing to its last batch. */
  onAnswered?: (worker: string, ms: number) => void;
}

/**
 * One FETCH round: each assigned worker gets a FETCH naming exactly the chunks it answers
 * for, on its own channel, and its FETCH_RESP batches are delivered in `seq` order. A
 * worker that sends nothing for `timeoutMs`, or answers with an error code, fails: its
 * later batches are ignored, so a retry can ask others for its share without duplicates.
 *
 * Accounting: a batch may name chunks it completes, each one the worker was asked for and
 * not named before (anything else fails the worker: `protocol`); its last batch (`done`)
 * completes every chunk it was asked for and did not name, so a short answer need not echo
 * the whole list back.
 *
 * With a {@link FetchFlow}, a worker sends `window` batches and then waits for credit:
 * each batch the reader takes ({@link ack}) lets it send one more, so a slow client holds
 * at most `window` batches per worker here, however fast the workers scan. A worker
 * waiting for credit is not silent; while it waits, its credit is re-sent now and then
 * so it knows the read is still on.
 */
export class FetchRound<R extends AnswerBatch = FetchRespMessage> {
  // Not a ulid: that draws 16 random values one by one, a visible cost per point lookup.
  readonly req = randomUUID();
  private readonly events: RoundEvent<R>[] = [];
  private wake?: () => void;
  private readonly open: Set<string>;
  readonly failed = new Map<string, WorkerFailure>();
  private readonly assigned = new Map<string, Assignment>();
  /** Per worker, the chunks it was asked for, as a set: made when one of its batches names chunks. */
  private readonly asked = new Map<string, ReadonlySet<string>>();
  /** Per worker, the chunks its batches named so far (complete answers only count once done). */
  private readonly named = new Map<string, Set<string>>();
  private readonly nextSeq = new Map<string, number>();
  private readonly early = new Map<string, Map<number, R>>();
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
  /** Workers whose probe is under way. */
  private readonly probing = new Set<string>();
  private readonly lastProbe = new Map<string, number>();
  private publishedAt = 0;
  private readonly timeoutMs: number;
  private readonly flow?: FetchFlow;

  constructor(
    ctx: Pick<CoordinatorContext, 'cmd' | 'keys' | 'router' | 'replyTo'>,
    readonly table: string,
    assignments: readonly Assignment[],
    private readonly request: RoundRequest,
    private readonly opts: FetchRoundOptions,
  ) {
    ({ timeoutMs: this.timeoutMs, flow: this.flow } = opts);
    const timeoutMs = this.timeoutMs;
    ({ cmd: this.cmd, keys: this.keys, replyTo: this.replyTo } = ctx);
    for (const a of assignments) this.assigned.set(a.worker, a);
    this.open = new Set(this.assigned.keys());
    const now = Date.now();
    for (const w of this.open) {
      this.lastHeard.set(w, now);
      this.grantedAt.set(w, now);
      this.named.set(w, new Set());
    }
    const answer = 'digest' in request ? 'DIGEST_RESP' : 'FETCH_RESP';
    this.unlisten = ctx.router.listen('req', this.req, (m) => m.type === answer && this.onResp(m as R));
    this.timer = setInterval(() => this.checkSilence(), Math.max(20, Math.min(PROBE_AFTER_MS / 2, timeoutMs / 4)));
    if (this.open.size === 0) this.push({ kind: 'end' });
  }

  /** The workers asked in this round. */
  get workers(): string[] {
    return [...this.assigned.keys()];
  }

  /**
   * Publishes each FETCH (or DIGEST) on its worker's channel with the worker's read fence:
   * the tail of its ops stream, read by publish-fenced-1.lua in the same step, after the
   * read began.
   */
  async publish(): Promise<void> {
    const workers = this.workers;
    if (workers.length === 0) return;
    this.publishedAt = Date.now();
    await Promise.all(workers.map((w) => this.publishTo(w)));
  }

  private async publishTo(w: string): Promise<void> {
    const a = this.assigned.get(w)!;
    const base = {
      req: this.req,
      worker: w,
      replyTo: this.replyTo,
      table: this.table,
      chunks: a.token === undefined ? [...a.chunks] : [a.token],
      timeoutMs: this.timeoutMs,
    };
    const msg =
      'digest' in this.request
        ? build(DigestMessage, base)
        : build(FetchMessage, {
            ...base,
            window: this.flow?.window,
            ...this.request.query,
            ...(this.request.explain ? { explain: true } : {}),
            ...(this.request.snapshot === undefined ? {} : { snapshot: this.request.snapshot }),
            ...(this.request.preview === undefined ? {} : { preview: this.request.preview }),
          });
    // The fence goes last: `{…}` becomes `{…,"tail":"<id>"}` in Redis.
    const json = encodeFetch(msg);
    const head = `${json.slice(0, -1)},"tail":"`;
    const rest = '"}';
    const receivers = await this.cmd.publishFenced(
      this.keys.workerOps(w),
      this.keys.workerFetch(w),
      head,
      rest,
      isCluster(this.cmd) ? '1' : '0',
    );
    if (receivers === 0)
      this.failWorker({ worker: w, code: 'timeout', reason: `worker ${w} is not subscribed to its fetch channel` });
  }

  /**
   * A worker asked by token holds another set of chunks than the token names (a POST
   * committed, or a copy made, since the read began): it is asked again, in this round and
   * under the same request id, with the list. A worker from before tokens answers `missing`
   * naming the token, and is asked again the same way.
   */
  private relist(m: R): boolean {
    const a = this.assigned.get(m.worker)!;
    if (a.token === undefined) return false;
    const unlisted =
      m.code === 'unlisted' || (m.code === 'missing' && m.type === 'FETCH_RESP' && m.missing?.[0] === a.token);
    if (!unlisted) return false;
    this.assigned.set(m.worker, { worker: a.worker, chunks: a.chunks });
    this.nextSeq.delete(m.worker);
    this.early.delete(m.worker);
    this.taken.delete(m.worker);
    this.granted.delete(m.worker);
    this.grantedAt.set(m.worker, Date.now());
    this.publishTo(m.worker).catch((e: Error) =>
      this.failWorker({
        worker: m.worker,
        code: 'timeout',
        reason: `asking worker ${m.worker} again failed: ${e.message}`,
      }),
    );
    return true;
  }

  /** The next event; resolves `{kind: 'end'}` once, after every worker finished or failed. */
  async next(): Promise<RoundEvent<R>> {
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
  ack(resp: R): void {
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
    void this.sendCredit(worker, n);
  }

  private sendCredit(worker: string, granted: number): Promise<number> {
    const msg = build(FetchCreditMessage, { req: this.req, worker, granted });
    return publish(this.cmd, this.keys.workerFetch(worker), encodeFetch(msg)).catch(() => -1);
  }

  /**
   * Is a silent worker still there? Its credit is published again (harmless: a worker takes
   * only larger credit): no subscriber means its process is gone. A worker still subscribed
   * but no longer live (stopped, partitioned: no heartbeat) is failed too.
   */
  private probe(worker: string): void {
    if (this.probing.has(worker)) return;
    this.probing.add(worker);
    this.lastProbe.set(worker, Date.now());
    void (async () => {
      try {
        const receivers = await this.sendCredit(worker, this.granted.get(worker) ?? this.flow?.window ?? 0);
        if (receivers === 0)
          return this.failWorker({
            worker,
            code: 'timeout',
            reason: `worker ${worker} is gone (no longer subscribed to its fetch channel)`,
          });
        if (this.opts.isLive && !(await this.opts.isLive(worker)))
          this.failWorker({ worker, code: 'timeout', reason: `worker ${worker} is no longer live (no heartbeat)` });
      } finally {
        this.probing.delete(worker);
      }
    })();
  }

  /** Stops listening; late batches are dropped, and workers still sending are told to stop. */
  close(): void {
    clearInterval(this.timer);
    this.unlisten();
    if (this.flow) {
      this.flow.queue.remove(this.held);
      this.held = 0;
      if (!this.ended) for (const w of this.open) void this.sendCredit(w, -1);
    }
    this.ended = true;
    this.wake?.();
  }

  private push(e: RoundEvent<R>): void {
    this.events.push(e);
    if (this.open.size === 0 && !this.ended) {
      this.ended = true;
      this.events.push({ kind: 'end' });
    }
    this.wake?.();
  }

  private onResp(m: R): void {
    if (!this.open.has(m.worker) || this.ended) return;
    this.lastHeard.set(m.worker, Date.now());
    if (this.flow) {
      const b = rowBytes(m);
      this.held += b;
      this.flow.queue.add(b);
    }
    if (m.code) {
      if (this.relist(m)) return;
      this.failWorker({
        worker: m.worker,
        code: m.code,
        reason: `${m.code}: ${m.error ?? ''}`,
        missing: m.type === 'FETCH_RESP' ? m.missing : undefined,
      });
      return;
    }
    // Batches arrive in order on one stream, but keep the order explicit anyway.
    const pending = this.early.get(m.worker) ?? new Map<number, R>();
    pending.set(m.seq, m);
    this.early.set(m.worker, pending);
    let seq = this.nextSeq.get(m.worker) ?? 0;
    for (let r = pending.get(seq); r; r = pending.get(seq)) {
      pending.delete(seq);
      seq++;
      const completed = this.account(r);
      if (typeof completed === 'string') {
        this.failWorker({ worker: r.worker, code: 'protocol', reason: completed });
        break;
      }
      if (r.done) {
        this.open.delete(r.worker);
        this.opts.onAnswered?.(r.worker, Date.now() - this.publishedAt);
      }
      this.push({ kind: 'batch', resp: r, completed });
      // Nothing a worker sends after its last batch counts.
      if (r.done) break;
    }
    this.nextSeq.set(m.worker, seq);
  }

  /**
   * The chunks a batch completes (see the class's accounting), or why they do not add up:
   * a chunk its worker was not asked for, or named twice.
   */
  private account(r: R): readonly string[] | string {
    const list = this.assigned.get(r.worker)!.chunks;
    const named = this.named.get(r.worker)!;
    const own = r.chunks ?? [];
    if (own.length > 0) {
      let asked = this.asked.get(r.worker);
      if (asked === undefined) this.asked.set(r.worker, (asked = new Set(list)));
      for (const c of own) {
        if (!asked.has(c)) return `worker ${r.worker} answered chunk ${c}, which it was not asked for`;
        if (named.has(c)) return `worker ${r.worker} answered chunk ${c} twice`;
        named.add(c);
      }
    }
    if (!r.done || named.size === list.length) return own;
    // Its last batch: it completes every chunk it was asked for and did not name (a sorted or
    // aggregated answer names none: then that is the whole list, as it was asked).
    if (named.size === 0) return list;
    const rest = list.filter((c) => !named.has(c));
    return own.length === 0 ? rest : [...own, ...rest];
  }

  private failWorker(f: WorkerFailure): void {
    if (!this.open.delete(f.worker)) return;
    this.failed.set(f.worker, f);
    this.push({ kind: 'failed', failure: f });
  }

  private checkSilence(): void {
    const now = Date.now();
    for (const w of [...this.open]) {
      if (this.flow && (this.nextSeq.get(w) ?? 0) >= (this.granted.get(w) ?? this.flow.window)) {
        // It sent all its credit allows and waits for the reader: not silent. Credit is
        // re-sent now and then so the worker knows the read is still on.
        this.lastHeard.set(w, now);
        if (now - (this.grantedAt.get(w) ?? now) > this.timeoutMs / 3)
          this.grant(w, this.granted.get(w) ?? this.flow.window);
        continue;
      }
      const silent = now - (this.lastHeard.get(w) ?? now);
      if (silent > this.timeoutMs) {
        this.failWorker({
          worker: w,
          code: 'timeout',
          reason: `no answer for DSTORE_FETCH_TIMEOUT_MS=${this.timeoutMs} ms`,
        });
      } else if (silent > PROBE_AFTER_MS && now - (this.lastProbe.get(w) ?? 0) > PROBE_AFTER_MS) {
        this.probe(w);
      }
    }
  }
}
