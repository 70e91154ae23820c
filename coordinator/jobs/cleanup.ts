import { redisNow } from '../../common/redis';
import type { CoordinatorContext } from '../context';
import { abortPost, finishCommit } from '../ingest';
import type { OpenPost } from '../placement';
import { inWriteOrder } from '../order-lock';

/** How long a decided commit may stay unsent by a live coordinator before clean-up finishes it. */
const STUCK_COMMIT_MS = 60_000;

/**
 * Aborts the POSTs whose coordinator died before committing them: their chunks are
 * removed from every worker and from the placement records, so a retry of the same
 * request (same `_id`s) can store them. A POST whose coordinator died while committing
 * (marked `committing`) is committed instead: its client may have been told nothing, but
 * the decision was taken. A coordinator is dead when its heartbeat (Redis
 * server time) is older than `coordinatorTimeoutMs`, or absent.
 */
export async function cleanupAbandonedPosts(ctx: CoordinatorContext, coordinatorTimeoutMs: number): Promise<string[]> {
  const open = await ctx.cmd.hgetall(ctx.keys.openPosts);
  if (Object.keys(open).length === 0) return [];
  const now = await redisNow(ctx.cmd);
  const aborted: string[] = [];
  for (const [post, raw] of Object.entries(open)) {
    const rec = JSON.parse(raw) as OpenPost;
    const seen = await ctx.cmd.zscore(ctx.keys.coordinators, rec.coordinator);
    const alive = seen !== null && now - Number(seen) <= coordinatorTimeoutMs;
    // A commit decided long ago whose coordinator lives on failed to send it (Redis failed it
    // over and over): finished here too; sending it twice is harmless (commit-send.ts).
    const stuck = typeof rec.committing === 'number' && now - rec.committing > STUCK_COMMIT_MS;
    if (alive && !stuck) continue;
    const workers = await ctx.cmd.smembers(ctx.keys.postWorkers(post));
    if (rec.committing) {
      await finishCommit(ctx, post, rec.table, workers);
      ctx.log.warn(
        { post, table: rec.table, coordinator: rec.coordinator, workers },
        'finished the commit of a POST whose coordinator died while committing',
      );
      continue;
    }
    if (await abortPost(ctx, post, rec.table, workers)) {
      aborted.push(post);
      ctx.log.warn(
        { post, table: rec.table, coordinator: rec.coordinator, workers },
        'aborted a POST abandoned by a dead coordinator',
      );
    }
  }
  return aborted;
}

/**
 * Finishes the writes a coordinator left half sent under a table's write-order lock (its
 * pending record: an UPDATE or DELETE with its change events, or a commit) when no one holds
 * the lock now: taking the lock finishes them (order-lock.ts). Without this a table that
 * nobody writes to again would keep such a write's change events staged. Returns the tables.
 */
export async function finishPendingWrites(ctx: CoordinatorContext): Promise<string[]> {
  const tables = await ctx.cmd.hkeys(ctx.keys.tables);
  if (tables.length === 0) return [];
  const pending = await ctx.cmd.mget(...tables.map((t) => ctx.keys.orderPending(t)));
  const done: string[] = [];
  for (const [i, t] of tables.entries()) {
    if (pending[i] === null || (await ctx.cmd.exists(ctx.keys.orderLock(t))) === 1) continue;
    await inWriteOrder(ctx, t, 'finishing a write left half sent', async () => undefined, 'fail');
    done.push(t);
  }
  return done;
}
