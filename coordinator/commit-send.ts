import { ulid } from 'ulid';
import { build, CommitMessage, UpsertMessage, type Message, type UpdatePreview } from '../common/messages';
import type { QuerySpec } from '../common/query';
import type { Logger } from '../common/logger';
import { xaddEach, type StreamWriter } from './ops';
import { changesOf, publishChanges } from './changes';
import type { TableDef } from './table-def';
import { readChunkMetas, type OpenPost, type TablePlacement } from './placement';

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

/** Reads rows as an ordinary read does (FetchMerger.read), here with a given placement. */
export type RowReader = (
  table: string,
  q: QuerySpec,
  opts: { placement?: TablePlacement; preview?: UpdatePreview },
) => AsyncIterable<{ rows: string; count: number } | object>;

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
 * staged any) then its COMMIT, then (a table with changes on) its change events. They are
 * bracketed by the table's pending record
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
  const [, raw] = (await ctx.cmd.pipeline().set(pending, post).hget(ctx.keys.tables, table).exec())!.map(([e, v]) => {
    if (e) throw e;
    return v as string | null;
  });
  if (staged.length > 0) await sendUpserts(ctx, table, post, staged);
  await xaddEach(ctx, workers, build(CommitMessage, { op: ulid(), post, replyTo: ctx.replyTo }).toArgs());
  // Its change events follow it, in the table's write order (the lock is held).
  const changes = changesOf(raw);
  if (changes) await publishChanges(ctx.cmd, ctx.keys, table, post, changes);
  await ctx.cmd.del(pending);
}

/**
 * Run by whoever takes a table's write-order lock and finds `post` in its pending record:
 * finishes the commit its sender left half sent (see {@link sendCommitOps}).
 */
export async function resumePendingCommit(ctx: CommitContext, table: string, post: string): Promise<void> {
  if (post.startsWith('{')) return resumeMutation(ctx, table, JSON.parse(post) as PendingMutation);
  ctx.log.warn({ table, post }, 'sending again the commit of a POST its sender left half sent, before the next write');
  const workers = await ctx.cmd.smembers(ctx.keys.postWorkers(post));
  await sendCommitOps(ctx, table, post, workers, await stagedUpserts(ctx, post));
}

/** An UPDATE or DELETE of a table with changes on, as its table's pending record holds it. */
interface PendingMutation {
  mutation: string;
  args: string[];
}

/** The pending record of an UPDATE or DELETE being sent with its change events (coordinator/mutations.ts). */
export function pendingMutation(op: string, msg: Message): string {
  return JSON.stringify({ mutation: op, args: msg.toArgs().map(String) } satisfies PendingMutation);
}

/**
 * Finishes an UPDATE or DELETE whose sender died part way: the op to every known worker
 * again (a worker applies an op id once), then what is left of its change events.
 */
async function resumeMutation(ctx: CommitContext, table: string, p: PendingMutation): Promise<void> {
  ctx.log.warn(
    { table, op: p.mutation },
    'sending again an UPDATE/DELETE its sender left half sent, before the next write',
  );
  await xaddEach(ctx, await ctx.workers.known(), p.args);
  const raw = await ctx.cmd.hget(ctx.keys.tables, table);
  const changes = changesOf(raw);
  await publishChanges(ctx.cmd, ctx.keys, table, p.mutation, changes);
  await ctx.cmd.del(ctx.keys.orderPending(table));
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

/**
 * The tables' placements as of their write order now, while the caller holds every one of
 * their write-order locks: chunks of closed POSTs and of POSTs whose commit is decided
 * (`committing`), whose commit ops are sent again first (a sender that died before its
 * pending record was written may have sent them to some streams or none; sending again is
 * harmless). Chunks of POSTs not yet committing are left out: their COMMIT cannot come before
 * what the caller sends next. A ordinary read's placement leaves out every open POST, also
 * those whose COMMIT is already on the streams, which an op sent now does reach. Also returns
 * the definitions (tables dropped meanwhile are absent).
 */
export async function placementInOrder(
  ctx: CommitContext,
  tables: readonly string[],
): Promise<{ defs: Map<string, TableDef>; placements: Map<string, TablePlacement> }> {
  const { cmd, keys } = ctx;
  // One moment (one slot, one MULTI): the chunk sets and the open POSTs. Read apart, a POST
  // opened between the two reads would have its chunks taken for committed ones.
  const read = cmd.multi().hgetall(keys.tables).hgetall(keys.openPosts);
  for (const t of tables) read.smembers(keys.tableChunks(t));
  const [defs, openRaw, ...chunkSets] = (await read.exec())!.map(([err, v]) => {
    if (err) throw err;
    return v;
  }) as [Record<string, string>, Record<string, string>, ...string[][]];
  const open = Object.entries(openRaw).map(([post, raw]) => [post, JSON.parse(raw) as OpenPost] as const);
  const locked = new Set(tables);
  for (const [post, p] of open) {
    if (!p.committing || !locked.has(p.table)) continue;
    await sendCommitOps(ctx, p.table, post, await cmd.smembers(keys.postWorkers(post)), await stagedUpserts(ctx, post));
  }
  const notCommitted = new Set(open.filter(([, p]) => !p.committing).map(([post]) => post));
  const out = { defs: new Map<string, TableDef>(), placements: new Map<string, TablePlacement>() };
  for (const [i, t] of tables.entries()) {
    if (!defs[t]) continue;
    const chunks = new Map<string, string[]>();
    for (const [id, m] of await readChunkMetas(cmd, keys, chunkSets[i]))
      if (!notCommitted.has(m.post)) chunks.set(id, m.replicas);
    out.defs.set(t, JSON.parse(defs[t]) as TableDef);
    out.placements.set(t, { version: `in-order:${t}`, chunks });
  }
  return out;
}
