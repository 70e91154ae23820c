/**
 * The write load and the read checks of the fault suite: batches of NDJSON rows POSTed
 * with unique `_id`s (retried with the same `_id`s on an ambiguous failure), full reads
 * with a timeout, and the comparison of a read with what was acknowledged.
 */
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { sleep } from '../support/wait';

/** One POST attempt of a batch. */
export interface Attempt {
  /** Date.now() when it was sent. */
  at: number;
  ms: number;
  /** HTTP status, when there was an answer. */
  status?: number;
  /** Connection error, timeout, or the answer's error text. */
  error?: string;
}

/**
 * What became of a batch: `acked` (some attempt answered 200), `ambiguous` (never 200, but a
 * retry got 409 "duplicate _id": an earlier attempt may have been stored), `failed` (every
 * attempt failed with a 5xx or a connection error: per the API nothing of it is visible),
 * `rejected` (a 4xx other than a retry's 409, not retried), `pending` (not finished).
 */
export type Outcome = 'pending' | 'acked' | 'ambiguous' | 'failed' | 'rejected';

export interface Batch {
  index: number;
  rows: Row[];
  body: string;
  outcome: Outcome;
  attempts: Attempt[];
  ackedAt?: number;
}

export interface LoadOptions {
  /** Coordinator URL, read at every attempt (it changes when the coordinator is restarted). */
  url: () => string;
  table: string;
  /** Distinguishes the `_id`s of one load from another's. */
  idPrefix: string;
  seed: number;
  /** Batches in all. @defaultValue 30 */
  batches?: number;
  /** Rows per batch. @defaultValue 1000 */
  rowsPerBatch?: number;
  /** Concurrent POST loops. @defaultValue 2 */
  lanes?: number;
  /** Pause of a lane between two batches. @defaultValue 150 */
  gapMs?: number;
  /** Attempts per batch (first try included). @defaultValue 8 */
  maxAttempts?: number;
  /** Client-side timeout of one POST. @defaultValue 20000 */
  requestTimeoutMs?: number;
  /** No new batch is started after this long. @defaultValue 90000 */
  deadlineMs?: number;
  log?: (msg: string) => void;
}

function errText(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const cause = err.cause ? ` (${err.cause.code ?? err.cause.message ?? ''})` : '';
  return `${err.name}: ${err.message}${cause}`;
}

/** A bounded write load: at most `batches` batches, `maxAttempts` tries each, no new batch after `deadlineMs`. */
export class Load {
  readonly batches: Batch[];
  private next = 0;
  private startedAt = 0;
  finishedAt = 0;
  private stopped = false;
  /** Batch index → Date.now() when its current attempt was sent, while the attempt is in flight. */
  private readonly inflight = new Map<number, number>();
  private readonly o: Required<Omit<LoadOptions, 'log'>> & Pick<LoadOptions, 'log'>;

  constructor(opts: LoadOptions) {
    this.o = {
      batches: 30,
      rowsPerBatch: 1000,
      lanes: 2,
      gapMs: 150,
      maxAttempts: 8,
      requestTimeoutMs: 20_000,
      deadlineMs: 90_000,
      ...opts,
    };
    this.batches = [];
    for (let i = 0; i < this.o.batches; i++) {
      const rows = makeRows(
        this.o.rowsPerBatch,
        this.o.seed * 1000 + i,
        `${this.o.idPrefix}-b${String(i).padStart(2, '0')}-`,
      );
      this.batches.push({
        index: i,
        rows,
        body: rows.map((r) => JSON.stringify(r)).join('\n') + '\n',
        outcome: 'pending',
        attempts: [],
      });
    }
  }

  /** Runs the lanes until every batch is done, the deadline passes, or {@link stop} is called. */
  async run(): Promise<void> {
    this.startedAt = Date.now();
    await Promise.all(Array.from({ length: this.o.lanes }, () => this.lane()));
    this.finishedAt = Date.now();
  }

  /** Starts no further batch or retry (a POST in flight still finishes). */
  stop(): void {
    this.stopped = true;
  }

  private async lane(): Promise<void> {
    while (!this.stopped && this.next < this.batches.length && Date.now() - this.startedAt < this.o.deadlineMs) {
      const b = this.batches[this.next++];
      await this.send(b);
      await sleep(this.o.gapMs);
    }
  }

  private async send(b: Batch): Promise<void> {
    let sawRetryConflict = false;
    for (let k = 1; k <= this.o.maxAttempts && !this.stopped; k++) {
      const a: Attempt = { at: Date.now(), ms: 0 };
      b.attempts.push(a);
      let retryAfter = Math.min(300 * 2 ** (k - 1), 3000);
      this.inflight.set(b.index, a.at);
      try {
        const res = await fetch(`${this.o.url()}/tables/${this.o.table}/records`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: b.body,
          signal: AbortSignal.timeout(this.o.requestTimeoutMs),
        });
        const text = await res.text();
        a.status = res.status;
        a.ms = Date.now() - a.at;
        if (res.status === 200) {
          const body = JSON.parse(text) as { inserted?: number };
          if (body.inserted !== b.rows.length) {
            a.error = `200 but inserted=${body.inserted}`;
          }
          b.outcome = 'acked';
          b.ackedAt = Date.now();
          return;
        }
        a.error = text.slice(0, 300);
        if (res.status === 409 && /duplicate _id/.test(text) && k > 1) {
          // A retry after an ambiguous failure: the earlier attempt may still be open (clean-up
          // aborts it after DSTORE_COORDINATOR_TIMEOUT_MS) or may have been stored.
          sawRetryConflict = true;
          retryAfter = Math.max(retryAfter, 1000);
        } else if (res.status < 500) {
          b.outcome = 'rejected';
          this.o.log?.(`batch ${b.index}: attempt ${k} rejected with ${res.status}: ${a.error}`);
          return;
        }
      } catch (e) {
        a.ms = Date.now() - a.at;
        a.error = errText(e);
      } finally {
        this.inflight.delete(b.index);
      }
      this.o.log?.(
        `batch ${b.index}: attempt ${k} failed (${a.status ?? 'no answer'}: ${(a.error ?? '').slice(0, 160)}); retrying in ${retryAfter} ms`,
      );
      if (k < this.o.maxAttempts) await sleep(retryAfter);
    }
    b.outcome = sawRetryConflict ? 'ambiguous' : 'failed';
  }

  /** Resolves once `n` batches are acked; throws after `timeoutMs` or if the load ended first. */
  async waitAcked(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count('acked') < n) {
      if (Date.now() > deadline)
        throw new Error(`only ${this.count('acked')} batches acked after ${timeoutMs} ms (wanted ${n})`);
      if (this.batches.every((b) => b.outcome !== 'pending'))
        throw new Error(`the load ended with ${this.count('acked')} acked batches (wanted ${n})`);
      await sleep(20);
    }
  }

  /**
   * Waits until some POST has been in flight for at least `minAgeMs` (so the fault hits a
   * request whose chunks are being placed) and returns its batch index and age; undefined
   * if none did within `timeoutMs`.
   */
  async waitInFlight(minAgeMs: number, timeoutMs: number): Promise<{ batch: number; ageMs: number } | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.stopped) {
      const now = Date.now();
      for (const [batch, since] of this.inflight) if (now - since >= minAgeMs) return { batch, ageMs: now - since };
      await sleep(5);
    }
    return undefined;
  }

  /** Median and max ms of the attempts that answered 200. */
  latency(): { median: number; max: number } {
    const ms = this.batches
      .flatMap((b) => b.attempts.filter((a) => a.status === 200).map((a) => a.ms))
      .sort((x, y) => x - y);
    return { median: ms.length ? ms[Math.floor(ms.length / 2)] : 0, max: ms.length ? ms[ms.length - 1] : 0 };
  }

  /** When the load started and ended (Date.now()). */
  span(): { start: number; end: number } {
    return { start: this.startedAt, end: this.finishedAt };
  }

  count(outcome: Outcome): number {
    return this.batches.filter((b) => b.outcome === outcome).length;
  }

  ackedRows(): Row[] {
    return this.batches.filter((b) => b.outcome === 'acked').flatMap((b) => b.rows);
  }

  /** `_id`s of the batches acked so far (a read started now must show all of them). */
  ackedIds(): Set<string> {
    return new Set(this.ackedRows().map((r) => r._id));
  }

  idsOf(outcome: Outcome): Set<string> {
    return new Set(this.batches.filter((b) => b.outcome === outcome).flatMap((b) => b.rows.map((r) => r._id)));
  }

  /** POST attempts that did not answer 200 (5xx, 4xx, connection errors, timeouts). */
  failedPosts(): number {
    return this.batches.reduce((n, b) => n + b.attempts.filter((a) => a.status !== 200).length, 0);
  }

  /**
   * Per ambiguous batch: how many of its rows `got` shows (a POST is stored whole or not at
   * all, so anything but 0 or all is a broken promise) and for how long retries got 409.
   */
  ambiguousDetail(got: Row[]): { batch: number; visible: number; rows: number; conflictMs: number }[] {
    const seen = new Set(got.map((r) => r._id));
    return this.batches
      .filter((b) => b.outcome === 'ambiguous')
      .map((b) => {
        const c = b.attempts.filter((a) => a.status === 409);
        return {
          batch: b.index,
          visible: b.rows.filter((r) => seen.has(r._id)).length,
          rows: b.rows.length,
          conflictMs: c.length ? c[c.length - 1].at + c[c.length - 1].ms - c[0].at : 0,
        };
      });
  }

  /** One line per batch that needed more than one attempt or did not end acked. */
  troubles(): string[] {
    return this.batches
      .filter((b) => b.attempts.length > 1 || b.outcome !== 'acked')
      .map(
        (b) =>
          `batch ${b.index} ${b.outcome}: ${b.attempts.map((a) => `${a.status ?? 'ERR'}${a.status === 200 ? '' : `(${(a.error ?? '').slice(0, 80)})`}`).join(' → ')}`,
      );
  }
}

/** The answer of a full read: the rows when it completed, else why not. */
export type ReadResult = { ok: true; rows: Row[]; ms: number } | { ok: false; why: string; ms: number };

/**
 * `POST /tables/:t/query` with `q` and a client-side timeout; incomplete (`_error`, `_partial`) unless `allowPartial`.
 */
export async function readAll(
  url: string,
  table: string,
  q: Record<string, unknown> = {},
  timeoutMs = 20_000,
  allowPartial = false,
): Promise<ReadResult> {
  const t = Date.now();
  try {
    const res = await fetch(`${url}/tables/${table}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(q),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (res.status !== 200) return { ok: false, why: `${res.status} ${text.slice(0, 200)}`, ms: Date.now() - t };
    const rows: Row[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      const v = JSON.parse(line) as Row & { _error?: unknown; _partial?: unknown };
      if (v._error !== undefined)
        return {
          ok: false,
          why: `stream ended with _error ${JSON.stringify(v._error).slice(0, 200)}`,
          ms: Date.now() - t,
        };
      if (v._partial !== undefined) {
        if (allowPartial) continue;
        return { ok: false, why: `partial: ${JSON.stringify(v).slice(0, 200)}`, ms: Date.now() - t };
      }
      rows.push(v);
    }
    return { ok: true, rows, ms: Date.now() - t };
  } catch (e) {
    return { ok: false, why: errText(e), ms: Date.now() - t };
  }
}

/** What a read showed, compared with the acknowledged rows. */
export interface Figures {
  lost: number;
  /** Extra copies of a row, plus rows of batches that were never acknowledged nor ambiguous (phantoms). */
  duplicated: number;
  wrong: number;
  /** Of `duplicated`: rows of `failed`/`rejected`/`pending` batches that are visible (never acked, must not be). */
  phantom: number;
  /** Rows of ambiguous batches that the read shows (excluded from the other figures). */
  ambiguousVisible: number;
  /** Extra copies among the ambiguous batches' rows (excluded from `duplicated`). */
  ambiguousDuplicated: number;
}

/** Compares a complete read with the load: acknowledged rows must all be there, once, unchanged. */
export function compare(load: Load, got: Row[]): Figures {
  const ambiguous = load.idsOf('ambiguous');
  const acked = load.ackedIds();
  const mine = got.filter((r) => !ambiguous.has(r._id));
  const amb = got.filter((r) => ambiguous.has(r._id));
  const f = lossAndDuplicates(load.ackedRows(), mine);
  const phantom = new Set(mine.filter((r) => !acked.has(r._id)).map((r) => r._id)).size;
  const ambIds = new Set(amb.map((r) => r._id));
  return { ...f, phantom, ambiguousVisible: ambIds.size, ambiguousDuplicated: amb.length - ambIds.size };
}

/**
 * A read is "exact" for recovery timing when every row acked before it started is there,
 * once, with its value, and no row appears twice. Rows of batches still in flight are ignored.
 */
export function exactFor(
  ackedBefore: Map<string, Row>,
  got: Row[],
): { exact: boolean; lost: number; duplicated: number; wrong: number } {
  const counted = got.filter((r) => ackedBefore.has(r._id));
  const f = lossAndDuplicates([...ackedBefore.values()], counted);
  const seen = new Set<string>();
  let dupOther = 0;
  for (const r of got) {
    if (seen.has(r._id)) dupOther++;
    seen.add(r._id);
  }
  const duplicated = Math.max(f.duplicated, dupOther);
  return { exact: f.lost === 0 && duplicated === 0 && f.wrong === 0, lost: f.lost, duplicated, wrong: f.wrong };
}

export interface ProbeOptions {
  url: () => string;
  table: string;
  load: Load;
  /** Time of the fault. */
  t0: number;
  /** Give up this long after t0. */
  deadlineMs: number;
  /** Only reads taken while this holds count (e.g. "the corrupted worker is live again"). */
  ready?: () => Promise<boolean>;
  gapMs?: number;
  /** Set to stop early (the test failed elsewhere). */
  cancelled?: () => boolean;
}

export interface ProbeResult {
  /** ms from t0 to the end of the first complete, exact full read; null if none within the deadline. */
  recoverMs: number | null;
  reads: number;
  failedReads: number;
  inexactReads: number;
  last?: string;
}

/** Polls full reads from the fault on, until one is complete and exact. */
export async function probeRecovery(o: ProbeOptions): Promise<ProbeResult> {
  const r: ProbeResult = { recoverMs: null, reads: 0, failedReads: 0, inexactReads: 0 };
  while (Date.now() - o.t0 < o.deadlineMs && !o.cancelled?.()) {
    if (o.ready && !(await o.ready().catch(() => false))) {
      await sleep(100);
      continue;
    }
    const before = new Map(o.load.ackedRows().map((x) => [x._id, x]));
    const res = await readAll(o.url(), o.table, {}, 15_000);
    r.reads++;
    if (!res.ok) {
      r.failedReads++;
      r.last = res.why;
    } else {
      const e = exactFor(before, res.rows);
      if (e.exact) {
        r.recoverMs = Date.now() - o.t0;
        return r;
      }
      r.inexactReads++;
      r.last = `inexact: lost ${e.lost}, duplicated ${e.duplicated}, wrong ${e.wrong} of ${before.size} acked`;
    }
    await sleep(o.gapMs ?? 250);
  }
  return r;
}
