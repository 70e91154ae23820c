import {
  buildRows,
  DigestRespMessage,
  errorText,
  FetchRespMessage,
  type FetchErrorCode,
  type FetchMode,
} from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import type { ReadCredits } from './read-credit';

/** Batches of one answer in flight at once (each up to DSTORE_FETCH_BATCH_BYTES). */
const SEND_WINDOW = 4;

/** One batch of an answer: rows (or digest lines), the chunks it completes, whether it is the last. */
export interface AnswerPart {
  lines: string[];
  chunks?: string[];
  done: boolean;
}

/** What a failed answer says instead of lines. */
export interface AnswerFailure {
  code: FetchErrorCode;
  error: string;
  missing?: string[];
}

/** Where an answer goes and what it is. */
export interface AnswerTarget {
  req: string;
  replyTo: string;
  worker: string;
  /** `digest` answers a DIGEST with DIGEST_RESP; the others a FETCH with FETCH_RESP of that mode. */
  kind: 'digest' | FetchMode;
  timeoutMs: number;
}

/**
 * Sends the batches of one answer to the coordinator's reply stream, numbered in order.
 * Up to {@link SEND_WINDOW} XADDs are in flight while the worker goes on scanning (one
 * connection keeps them in order), and each batch first waits for its read credit. A send
 * that failed is thrown at the next send or at {@link drain}.
 */
export class AnswerSender {
  private seq = 0;
  private readonly pending: Promise<void>[] = [];
  private failure: unknown;

  constructor(
    private readonly cmd: DstoreRedis,
    private readonly credits: ReadCredits,
    private readonly target: AnswerTarget,
  ) {}

  /** The answer's kind once the plan is known (a FETCH's mode). */
  setKind(kind: AnswerTarget['kind']): void {
    this.target.kind = kind;
  }

  /** Sends a batch without waiting for Redis (within the window). */
  async send(part: AnswerPart): Promise<void> {
    this.check();
    const seq = this.seq++;
    await this.credits.wait(this.target.req, seq, this.target.timeoutMs);
    this.pending.push(this.xadd(seq, part).catch((e) => void (this.failure ??= e)));
    if (this.pending.length >= SEND_WINDOW) await this.pending.shift();
    this.check();
  }

  /** Waits for every batch sent so far. */
  async drain(): Promise<void> {
    await Promise.all(this.pending.splice(0));
    this.check();
  }

  /** Sends the last batch, after every earlier one and once credit allows it. */
  async finish(part: Omit<AnswerPart, 'done'>): Promise<void> {
    await this.drain();
    const seq = this.seq++;
    await this.credits.wait(this.target.req, seq, this.target.timeoutMs);
    await this.xadd(seq, { ...part, done: true });
  }

  /** Ends the answer with an error code instead of (more) lines. */
  async fail(f: AnswerFailure): Promise<void> {
    await this.drain().catch(() => undefined);
    await this.xadd(this.seq++, { lines: [], done: true }, f);
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private async xadd(seq: number, part: AnswerPart, f?: AnswerFailure): Promise<void> {
    const { req, worker, kind } = this.target;
    const error = f && { code: f.code, error: errorText(f.error), missing: f.missing };
    const msg =
      kind === 'digest'
        ? buildRows(DigestRespMessage, {
            req,
            worker,
            seq,
            chunks: part.chunks,
            digests: part.lines,
            done: part.done,
            ...error,
          })
        : buildRows(FetchRespMessage, {
            req,
            worker,
            seq,
            mode: f ? 'rows' : kind,
            count: part.lines.length,
            chunks: part.chunks,
            rows: part.lines.join('\n'),
            done: part.done,
            ...error,
          });
    await this.cmd.xadd(this.target.replyTo, '*', ...msg.toArgs());
  }
}
