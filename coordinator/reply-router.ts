import type { Logger } from '../common/logger';
import { decodeReply, fieldsFromArray, type ReplyMessage } from '../common/messages';
import type { DstoreRedis } from '../common/redis';

type StreamReply = [key: string, entries: [id: string, fields: string[]][]][] | null;

/** The id a reply is routed by: chunk (POST_ACK), op (OP_ACK) or request (FETCH_RESP). */
function routeOf(m: ReplyMessage): string {
  switch (m.type) {
    case 'POST_ACK':
      return `post:${m.post}`;
    case 'OP_ACK':
      return `op:${m.op}`;
    case 'FETCH_RESP':
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
  private readonly routes = new Map<string, (m: ReplyMessage) => void>();
  private lastId = '0-0';
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
    this.routes.set(key, fn);
    return () => {
      if (this.routes.get(key) === fn) this.routes.delete(key);
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
        const fn = this.routes.get(routeOf(m));
        if (fn) {
          try {
            fn(m);
          } catch (e) {
            this.log.error({ err: e }, 'a reply handler threw');
          }
        }
      }
      if (entries.length > 0) {
        // Everything before the last entry read has been handled.
        this.cmd.xtrim(this.stream, 'MINID', this.lastId).catch(() => undefined);
      }
    }
  }
}
