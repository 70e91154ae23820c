import { ulid } from 'ulid';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import type { Message } from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import type { WorkerDirectory } from './membership';
import { broadcastOp, type Failpoints, type OpOutcome } from './ops';
import { inWriteOrder } from './order-lock';
import type { ReplyRouter } from './reply-router';

/** What every coordinator component shares: its Redis connection, keys, replies and workers. */
export interface CoordinatorContext {
  cmd: DstoreRedis;
  keys: Keys;
  router: ReplyRouter;
  workers: WorkerDirectory;
  /** This coordinator's id. */
  coordinatorId: string;
  /** This coordinator's reply stream. */
  replyTo: string;
  log: Logger;
  /** Test-only fault injection of this coordinator (absent: none). */
  failpoints?: Failpoints;
}

/**
 * Sends an op to every known worker and waits for the live ones (see {@link broadcastOp}).
 * The known list is read again after the XADDs and a worker that joined in between gets
 * the op as well. With `inflight` (UPDATE, DELETE) the op is registered in
 * `<prefix>:mutations:inflight` before the list is read and until every XADD is done: a
 * chunk copy waits for the ones registered before it, so that each of them is either on
 * both sides of the copy's verification or lands on the target after the copy
 * (docs/architecture.md, "Copies are verified"). With `orderTable` the XADDs run under
 * that table's write-order lock (coordinator/order-lock.ts).
 */
export async function broadcastToAll(
  ctx: CoordinatorContext,
  make: (op: string) => Message,
  timeoutMs: number,
  opts: {
    inflight?: boolean;
    orderTable?: string;
    /** Runs under the write-order lock around the XADDs (`send`): an UPDATE's change events. */
    inOrder?: (send: () => Promise<void>, op: string, msg: Message) => Promise<void>;
  } = {},
): Promise<OpOutcome> {
  const token = opts.inflight ? `${ctx.coordinatorId}:${ulid()}` : undefined;
  if (token) await ctx.cmd.touch(ctx.keys.mutationsInflight, token);
  let done = token === undefined;
  const sent = async () => {
    if (done) return;
    done = true;
    await ctx.cmd.zrem(ctx.keys.mutationsInflight, token!);
  };
  try {
    const [known, live] = [await ctx.workers.known(), await ctx.workers.live()];
    return await broadcastOp(ctx, ctx.router, known, live, make, timeoutMs, {
      joined: () => ctx.workers.known(),
      sent,
      live: () => ctx.workers.live(),
      ordered:
        opts.orderTable === undefined
          ? undefined
          : (send, op, msg) =>
              inWriteOrder(
                ctx,
                opts.orderTable!,
                'an UPDATE/DELETE',
                () => (opts.inOrder ? opts.inOrder(send, op, msg) : send()),
                'fail',
              ),
    });
  } finally {
    // After a failed XADD too (the op is then on some streams only, and the request fails).
    await sent().catch(() => undefined);
  }
}
