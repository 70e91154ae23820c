import type { Logger } from '../common/logger';
import { decodeReply, fieldsFromArray, type ReplyMessage } from '../common/messages';
import type { DstoreRedis } from '../common/redis';

/** Handled entries left in the reply stream before it is trimmed. */
const TRIM_EVERY = 64;

type StreamReply = [key: string, entries: [id: string, fields: string[]][]][] | null;

/** The id a reply is routed by: chunk (POST_ACK), op (OP_ACK) or request (FETCH_RESP, DIGEST_RESP). */
function routeOf(m: ReplyMessage): string {
  switch (m.type) {
    case 'POST_ACK':
      return `post:${m.post}`;
    case 'OP_ACK':
      return `op:${m.op}`;
    case 'FETCH_RESP':
    case 'DIGEST_RESP':
      return `req:${m.req}`;
  }
}

/**
 * Reads this coordinator's reply stream with one blocking XREAD loop and hands each
 * reply to whoever waits for its POST, op or request. Replies nobody waits for (late
 * answers to a request that already finished) are dropped. Consumed entries are
 * trimmed so the stream stays short; the stream is deleted when the coordinator stops.
 */
export class ReplyRouter {
  // Several listeners per key: concurrent repair or move jobs may copy chunks of one POST.
  private readonly routes = new Map<string, Set<(m: ReplyMessage) => void>>();
  private lastId = '0-0';
  /** Entries handled since the last XTRIM. */
  private untrimmed = 0;
  private stopping = false;
  private loopDone?: Promise<void>;

  constructor(
    private readonly read: DstoreRedis,
    private readonly cmd: DstoreRedis,
    readonly stream: string,
    private readonly log: Logger,
  ) {}

  /** Starts reading from an empty stream (replies to a previous process of the same id are void). */
  async start(): Promise<void> {
    await this.cmd.del(this.stream);
    this.loopDone = this.loop();
  }

  /** Stops reading and deletes the stream. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.read.disconnect();
    await this.loopDone;
    await this.cmd.del(this.stream).catch(() => undefined);
  }

  /** Routes replies for `kind:id` to `fn` until the returned function is called. */
  listen(kind: 'post' | 'op' | 'req', id: string, fn: (m: ReplyMessage) => void): () => void {
    const key = `${kind}:${id}`;
    const set = this.routes.get(key) ?? new Set();
    set.add(fn);
    this.routes.set(key, set);
    return () => {
      const cur = this.routes.get(key);
      if (cur?.delete(fn) && cur.size === 0) this.routes.delete(key);
    };
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let res: StreamReply;
      try {
        res = (await this.read.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.stream, this.lastId)) as StreamReply;
      } catch (e) {
        if (this.stopping) return;
        this.log.warn({ err: e }, 'reading the reply stream failed; retrying');
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      const entries = res?.[0]?.[1] ?? [];
      for (const [id, raw] of entries) {
        this.lastId = id;
        let m: ReplyMessage;
        try {
          m = decodeReply(fieldsFromArray(raw));
        } catch (e) {
          this.log.warn({ entry: id, reason: (e as Error).message }, 'ignored an invalid reply');
          continue;
        }
        for (const fn of this.routes.get(routeOf(m)) ?? []) {
          try {
            fn(m);
          } catch (e) {
            this.log.error({ err: e }, 'a reply handler threw');
          }
        }
      }
      // Everything before the last entry read has been handled. Trimmed every TRIM_EVERY
      // entries or when the stream goes quiet, not after every read: a point lookup
      // reads up to one reply per worker, and each XTRIM is a socket write.
      this.untrimmed += entries.length;
      if (this.untrimmed >= TRIM_EVERY || (entries.length === 0 && this.untrimmed > 0)) {
        this.untrimmed = 0;
        this.cmd.xtrim(this.stream, 'MINID', this.lastId).catch(() => undefined);
      }
    }
  }
}
