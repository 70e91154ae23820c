import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import type { Message } from '../common/messages';
import type { DstoreRedis } from '../common/redis';
import type { WorkerDirectory } from './membership';
import { broadcastOp, type OpOutcome } from './ops';
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
}

/** Sends an op to every known worker and waits for the live ones (see {@link broadcastOp}). */
export async function broadcastToAll(ctx: CoordinatorContext, make: (op: string) => Message, timeoutMs: number): Promise<OpOutcome> {
  const [known, live] = [await ctx.workers.known(), await ctx.workers.live()];
  return broadcastOp(ctx.cmd, ctx.keys, ctx.router, known, live, make, timeoutMs);
}
