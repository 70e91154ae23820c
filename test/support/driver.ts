import type Redis from 'ioredis';
import { ulid } from 'ulid';
import { makeKeys, OPS_GROUP, type Keys } from '../../common/keys';
import {
  AbortMessage,
  CommitMessage,
  decodeReply,
  DeleteMessage,
  DropTableMessage,
  encodeFetch,
  FetchMessage,
  fieldsFromArray,
  PostMessage,
  SetupTableMessage,
  UpdateMessage,
  respRows,
  type FetchRespMessage,
  type ReplyMessage,
} from '../../common/messages';
import type { QuerySpec } from '../../common/query';
import { publish } from '../../common/redis';
import { testClient } from './redis';

/** A row as tests write it. */
export type Row = { _id: string } & Record<string, unknown>;

/** Per worker, what a FETCH got back. */
export interface FetchResult {
  byWorker: Map<string, FetchRespMessage[]>;
  /** All lines, parsed, in arrival order per worker. */
  lines: unknown[];
  errors: { worker: string; code?: string; error?: string; missing?: string[] }[];
  /**
   * Per worker, the chunks each of its batches completes, as the coordinator counts them
   * (coordinator/fetch-round.ts): those a batch names, and with `done` every other chunk asked.
   */
  completed: Map<string, string[][]>;
}

/**
 * Plays the coordinator's part in worker tests: writes ops messages straight into a
 * worker's stream, publishes FETCH, and reads the replies from its own reply stream.
 */
export class Driver {
  readonly keys: Keys;
  readonly replyTo: string;
  readonly redis: Redis;
  private lastReplyId = '0-0';
  private readonly inbox: ReplyMessage[] = [];

  constructor(url: string, prefix: string, coordinatorId = 'test') {
    this.keys = makeKeys(prefix);
    this.replyTo = this.keys.coordReplies(coordinatorId);
    this.redis = testClient(url, `${prefix}:test-driver`);
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }

  /** Appends raw fields to a worker's ops stream; returns the entry id. */
  async xadd(workerId: string, args: string[]): Promise<string> {
    return (await this.redis.xadd(this.keys.workerOps(workerId), '*', ...args))!;
  }

  async setupTable(workerId: string, table: string, schema?: Record<string, string>): Promise<string> {
    const m = Object.assign(new SetupTableMessage(), { op: ulid(), table, schema, version: 1, replyTo: this.replyTo });
    await this.xadd(workerId, m.toArgs());
    return m.op;
  }

  async dropTable(workerId: string, table: string): Promise<string> {
    const m = Object.assign(new DropTableMessage(), { op: ulid(), table, replyTo: this.replyTo });
    await this.xadd(workerId, m.toArgs());
    return m.op;
  }

  /** The POST id chunks belong to unless a test says otherwise. */
  readonly postId = ulid();
  /** Chunks made by {@link post}, and POSTs committed by {@link commit}: what {@link fetch} asks for. */
  private readonly posted = new Map<string, { table: string; replicas: string[]; post: string }>();
  private readonly committed = new Set<string>();

  /** A POST message for rows (not yet sent). */
  post(table: string, rows: Row[], replicas: string[], chunk = ulid(), post = this.postId): PostMessage {
    this.posted.set(chunk, { table, replicas, post });
    return Object.assign(new PostMessage(), {
      chunk,
      post,
      table,
      replicas,
      replyTo: this.replyTo,
      ids: rows.map((r) => r._id),
      rows: rows.map((r) => JSON.stringify(r)),
    });
  }

  async send(workerId: string, msg: { toArgs(): string[] }): Promise<string> {
    return this.xadd(workerId, msg.toArgs());
  }

  /** Sends COMMIT for a POST (default: the driver's) to each worker; returns the op id. */
  async commit(workers: string[], post = this.postId): Promise<string> {
    const op = ulid();
    this.committed.add(post);
    for (const w of workers)
      await this.send(w, Object.assign(new CommitMessage(), { op, post, replyTo: this.replyTo }));
    return op;
  }

  /** Sends ABORT for a POST to each worker; returns the op id. */
  async abort(workers: string[], post = this.postId): Promise<string> {
    const op = ulid();
    this.committed.delete(post);
    for (const w of workers) await this.send(w, Object.assign(new AbortMessage(), { op, post, replyTo: this.replyTo }));
    return op;
  }

  async update(
    workerId: string,
    table: string,
    where: unknown,
    set: Record<string, unknown>,
    op = ulid(),
  ): Promise<string> {
    await this.send(workerId, Object.assign(new UpdateMessage(), { op, table, where, set, replyTo: this.replyTo }));
    return op;
  }

  async delete(workerId: string, table: string, where: unknown, op = ulid()): Promise<string> {
    await this.send(workerId, Object.assign(new DeleteMessage(), { op, table, where, replyTo: this.replyTo }));
    return op;
  }

  /** Reads whatever replies arrived (blocking up to `blockMs` for the first). */
  async pull(blockMs = 200): Promise<ReplyMessage[]> {
    const res = (await this.redis.xread('COUNT', 1000, 'BLOCK', blockMs, 'STREAMS', this.replyTo, this.lastReplyId)) as
      [string, [string, string[]][]][] | null;
    const out: ReplyMessage[] = [];
    for (const [id, fields] of res?.[0]?.[1] ?? []) {
      this.lastReplyId = id;
      out.push(decodeReply(fieldsFromArray(fields)));
    }
    this.inbox.push(...out);
    return out;
  }

  /** Every reply received so far. */
  get replies(): readonly ReplyMessage[] {
    return this.inbox;
  }

  /** Waits until `pred` holds over all replies so far. */
  async until(
    pred: (all: readonly ReplyMessage[]) => boolean,
    what: string,
    timeoutMs = 20_000,
  ): Promise<readonly ReplyMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.inbox)) {
      if (Date.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.inbox.length} replies`);
      await this.pull();
    }
    return this.inbox;
  }

  /** Acks (POST_ACK) received for a chunk. */
  acksFor(chunk: string) {
    return this.inbox.filter((r) => r.type === 'POST_ACK' && r.chunk === chunk);
  }

  /** OP_ACKs received for an op. */
  opAcks(op: string) {
    return this.inbox.filter((r) => r.type === 'OP_ACK' && r.op === op);
  }

  /**
   * Reads as a coordinator would: each chunk (default: every chunk this driver posted to the
   * table in a committed POST) is asked of its first replica among `workers`; collects the
   * FETCH_RESP batches until each asked worker sent `done`.
   */
  async fetch(
    table: string,
    workers: string[],
    q: QuerySpec = {},
    timeoutMs = 10_000,
    chunks?: string[],
  ): Promise<FetchResult> {
    const wanted =
      chunks ?? [...this.posted].filter(([, c]) => c.table === table && this.committed.has(c.post)).map(([id]) => id);
    const asks = new Map<string, string[]>(workers.map((w) => [w, []]));
    for (const c of wanted) {
      const first = (this.posted.get(c)?.replicas ?? workers).find((w) => workers.includes(w));
      if (first) asks.get(first)!.push(c);
    }
    return this.fetchFrom(table, asks, q, timeoutMs);
  }

  /** Sends each worker a FETCH for exactly its chunks and collects the batches until each sent `done`. */
  async fetchFrom(
    table: string,
    asks: Map<string, string[]>,
    q: QuerySpec = {},
    timeoutMs = 10_000,
  ): Promise<FetchResult> {
    const req = ulid();
    for (const [worker, chunks] of asks) {
      const msg = Object.assign(new FetchMessage(), {
        req,
        worker,
        replyTo: this.replyTo,
        table,
        chunks,
        timeoutMs,
        ...q,
      });
      const receivers = await publish(this.redis, this.keys.workerFetch(worker), encodeFetch(msg));
      if (receivers === 0)
        throw new Error(`FETCH ${req}: worker ${worker} is not subscribed to ${this.keys.workerFetch(worker)}`);
    }
    const mine = (r: ReplyMessage): r is FetchRespMessage => r.type === 'FETCH_RESP' && r.req === req;
    const workers = [...asks.keys()];
    try {
      await this.until(
        (all) => workers.every((w) => all.some((r) => mine(r) && r.worker === w && r.done)),
        `FETCH ${req} from ${workers.join(',')}`,
        timeoutMs + 5000,
      );
    } catch (e) {
      const subs = await Promise.all(workers.map((w) => this.redis.call('PUBSUB', 'NUMSUB', this.keys.workerFetch(w))));
      throw new Error(`${(e as Error).message}; subscribers now: ${JSON.stringify(subs)}`);
    }
    const result: FetchResult = { byWorker: new Map(), lines: [], errors: [], completed: new Map() };
    for (const r of this.inbox.filter(mine).sort((a, b) => a.seq - b.seq)) {
      if (!result.byWorker.has(r.worker)) result.byWorker.set(r.worker, []);
      result.byWorker.get(r.worker)!.push(r);
      if (r.code) result.errors.push({ worker: r.worker, code: r.code, error: r.error, missing: r.missing });
      for (const line of respRows(r)) result.lines.push(parseLine(r.mode, line));
      const done = result.completed.get(r.worker) ?? [];
      const named = new Set(done.flat());
      const own = r.chunks ?? [];
      done.push(
        r.done && !r.code
          ? [...own, ...(asks.get(r.worker) ?? []).filter((c) => !named.has(c) && !own.includes(c))]
          : own,
      );
      result.completed.set(r.worker, done);
    }
    return result;
  }

  /** Consumer-group figures of a worker's stream: entries not yet delivered and delivered-but-unacked. */
  async groupInfo(workerId: string): Promise<{ lag: number; pending: number; length: number }> {
    const key = this.keys.workerOps(workerId);
    const groups = (await this.redis.xinfo('GROUPS', key)) as unknown[][];
    const g = groups.map((arr) => fieldsFromArray(arr.map(String))).find((f) => f.name === OPS_GROUP);
    const length = await this.redis.xlen(key);
    return { lag: Number(g?.lag ?? length), pending: Number(g?.pending ?? 0), length };
  }

  /** A worker's last published status, if any. */
  async status(workerId: string): Promise<Record<string, unknown> | undefined> {
    const raw = await this.redis.hget(this.keys.workerStatus, workerId);
    return raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
  }

  /** Dead-letter entries as objects. */
  async deadLetters(): Promise<Record<string, string>[]> {
    const entries = await this.redis.xrange(this.keys.dead, '-', '+');
    return entries.map(([, f]) => fieldsFromArray(f));
  }
}

/** A FETCH_RESP line as a value; a sorted line (`[key…, _id]`, tab, row) as `[key…, _id, row]`. */
function parseLine(mode: string, line: string): unknown {
  if (mode !== 'sorted') return JSON.parse(line);
  const tab = line.indexOf('\t');
  return [...(JSON.parse(line.slice(0, tab)) as unknown[]), JSON.parse(line.slice(tab + 1))];
}
