import { ulid } from 'ulid';
import { build, CommitMessage, UpsertMessage } from '../common/messages';
import type { Logger } from '../common/logger';
import { xaddEach, type StreamWriter } from './ops';

/**
 * What sending a POST's commit needs of its coordinator (a part of CoordinatorContext,
 * spelled out: the write-order lock, which the context's broadcasts use, resumes commits).
 */
export interface CommitContext extends StreamWriter {
  replyTo: string;
  log: Logger;
  coordinatorId: string;
  workers: { known(): Promise<string[]> };
}

/** A batch of an upsert POST's rows whose `_id` was stored (ingest.ts, stageUpserts). */
export interface StagedUpserts {
  op: string;
  mode: 'replace' | 'merge';
  chunks: string[];
  ids: string[];
  rows: string[];
  defaults?: Record<string, unknown>;
}

/** The batches an upsert POST staged, in order. */
export async function stagedUpserts(ctx: Pick<CommitContext, 'cmd' | 'keys'>, post: string): Promise<StagedUpserts[]> {
  return (await ctx.cmd.lrange(ctx.keys.postUpserts(post), 0, -1)).map((b) => JSON.parse(b) as StagedUpserts);
}

/**
 * The ops of a POST's commit, sent under the table's write-order lock: its UPSERTs (when it
 * staged any) then its COMMIT. They are bracketed by the table's pending record
 * (`{<p>}:order:<t>:pending` = the POST): a sender that dies or fails half way leaves it, and
 * whoever takes the lock next sends them all again ({@link resumePendingCommit}) before its own
 * op, so no write of the table is ordered between the streams that got them and the others.
 * Sending again is harmless: UPSERTs keep their op ids, COMMIT is idempotent.
 */
export async function sendCommitOps(
  ctx: CommitContext,
  table: string,
  post: string,
  workers: readonly string[],
  staged: readonly StagedUpserts[],
): Promise<void> {
  const pending = ctx.keys.orderPending(table);
  await ctx.cmd.set(pending, post);
  if (staged.length > 0) await sendUpserts(ctx, table, post, staged);
  await xaddEach(ctx, workers, build(CommitMessage, { op: ulid(), post, replyTo: ctx.replyTo }).toArgs());
  await ctx.cmd.del(pending);
}

/**
 * Run by whoever takes a table's write-order lock and finds `post` in its pending record:
 * finishes the commit its sender left half sent (see {@link sendCommitOps}).
 */
export async function resumePendingCommit(ctx: CommitContext, table: string, post: string): Promise<void> {
  ctx.log.warn({ table, post }, 'sending again the commit of a POST its sender left half sent, before the next write');
  const workers = await ctx.cmd.smembers(ctx.keys.postWorkers(post));
  await sendCommitOps(ctx, table, post, workers, await stagedUpserts(ctx, post));
}

/**
 * Sends the staged rows as UPSERT ops to every known worker, like an UPDATE (a chunk's
 * holders can change under a move; copies being made are checked against their source):
 * registered in `mutations:inflight` first, so a chunk copy waits for them, and again before
 * each batch, so a long send is not taken for a dead one. Workers that joined meanwhile get
 * every batch at the end.
 */
async function sendUpserts(
  ctx: CommitContext,
  table: string,
  post: string,
  staged: readonly StagedUpserts[],
): Promise<void> {
  const token = `${ctx.coordinatorId}:${ulid()}`;
  await ctx.cmd.touch(ctx.keys.mutationsInflight, token);
  try {
    const messages = staged.map((b) => build(UpsertMessage, { ...b, post, table, replyTo: ctx.replyTo }).toArgs());
    const known = await ctx.workers.known();
    for (const args of messages) {
      await ctx.cmd.touch(ctx.keys.mutationsInflight, token);
      await xaddEach(ctx, known, args);
    }
    const joined = (await ctx.workers.known()).filter((w) => !known.includes(w));
    for (const args of joined.length > 0 ? messages : []) await xaddEach(ctx, joined, args);
  } finally {
    await ctx.cmd.zrem(ctx.keys.mutationsInflight, token).catch(() => undefined);
  }
}

/** Removes an upsert POST's marks on the ids it rewrote (or would have). */
export async function unmarkUpserts(
  ctx: Pick<CommitContext, 'cmd' | 'keys'>,
  table: string,
  post: string,
  ids: string[],
): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000)
    await ctx.cmd.unmarkUpserts(ctx.keys.upserting(table), post, ...ids.slice(i, i + 1000));
}
