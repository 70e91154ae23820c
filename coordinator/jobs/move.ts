import { ulid } from 'ulid';
import { build, DropChunksMessage, SetReplicasMessage } from '../../common/messages';
import type { CoordinatorContext } from '../context';
import { copyVerified } from './chunk-copy';
import { xaddEach } from '../ops';
import { readChunkMetas, readChunkRecord, setReplicas } from '../placement';
import { placementChange } from './repair';

/** What one move did. */
export interface MoveOutcome {
  chunk: string;
  /** `target-gone`: the planned target is no longer live, is draining or retired, or already holds a copy. */
  status: 'moved' | 'gone' | 'uncommitted' | 'not-held' | 'last-copy' | 'target-gone';
  from: string;
  to?: string;
  replicas?: string[];
}

/**
 * Moves one committed chunk off worker `from`, onto `to` (or nowhere: the chunk keeps
 * one copy less). The order (docs/architecture.md, "Drain and rebalance") keeps every
 * read exact while it runs:
 *
 * 1. copy the rows to `to` (a FETCH of exactly that chunk from a live holder, then POST +
 *    COMMIT) and compare the digests of source and copy in one digest FETCH, copying again
 *    until they match ({@link copyVerified}: an UPDATE/DELETE racing the copy is not lost).
 *    Reads are routed by the placement record, which does not name `to` yet: the copy
 *    answers no read before it is verified;
 * 2. record the new list in `<prefix>:chunks` and the workers' chunk sets, and bump the
 *    table's placement version: reads that begin now ask the new holders;
 * 3. SET_REPLICAS to the holders (kept for operators) and DROP_CHUNKS to `from`. A read
 *    that still asks `from` (it read the placement before step 2) is answered from its
 *    copy, or, once `from` dropped it, gets `missing` and asks the new holders.
 *
 * Idempotent and resumable: run again after a crash at any step, with the same `to`, it
 * finishes the move (the copy is acked as a duplicate and verified again; a chunk already
 * recorded elsewhere is only dropped from `from` again).
 */
export async function moveChunk(
  ctx: CoordinatorContext,
  chunk: string,
  from: string,
  to: string | undefined,
  copyTimeoutMs: number,
): Promise<MoveOutcome> {
  const meta = await readChunkRecord(ctx.cmd, ctx.keys, chunk);
  const drop = () =>
    xaddEach(ctx, [from], build(DropChunksMessage, { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs());
  if (!meta) {
    await ctx.cmd.srem(ctx.keys.workerChunks(from), chunk);
    return { chunk, status: 'gone', from };
  }
  if (!meta.replicas.includes(from)) {
    // A move that died after its record: `from` may still hold the copy no read asks for.
    await drop();
    return { chunk, status: 'not-held', from, replicas: meta.replicas };
  }
  if (await ctx.cmd.hexists(ctx.keys.openPosts, meta.post)) return { chunk, status: 'uncommitted', from };
  // A target that got a copy meanwhile (a repair): moving would only drop one copy.
  if (to !== undefined && meta.replicas.includes(to)) return { chunk, status: 'target-gone', from, to };
  const target = to;
  const replicas = meta.replicas.flatMap((w) => (w !== from ? [w] : target ? [target] : []));
  if (replicas.length === 0) return { chunk, status: 'last-copy', from, replicas: meta.replicas };
  if (target) {
    if (!(await canTake(ctx, target))) return { chunk, status: 'target-gone', from, to: target };
    const live = await ctx.workers.live();
    // Prefer a source other than the worker being drained: it may be on its way out.
    const sources = meta.replicas
      .filter((w) => live.includes(w))
      .sort((a, b) => Number(a === from) - Number(b === from));
    if (sources.length === 0)
      throw new Error(
        `chunk ${chunk}: no live replica to copy from (replicas ${meta.replicas.join(', ')}); will retry`,
      );
    // The copy carries the old list (without the target): it answers no read before the
    // switch, and the switch waits until it is verified equal to the source.
    await copyVerified(ctx, meta, chunk, sources[0], [target], meta.replicas, copyTimeoutMs);
  }
  // Without a target (a forced drain) the chunk keeps one copy fewer: repair looks at it.
  const under = replicas.length < meta.replicas.length ? { dueMs: Date.now() } : 'keep';
  await placementChange(chunk, `moving it from ${from}`, () =>
    setReplicas(ctx.cmd, ctx.keys, chunk, meta, replicas, under),
  );
  const set = build(SetReplicasMessage, { op: ulid(), chunk, replicas, replyTo: ctx.replyTo }).toArgs();
  // One XADD per worker stream (each its own slot on a cluster).
  await Promise.all([xaddEach(ctx, replicas, set), drop()]);
  ctx.log.info({ chunk, table: meta.table, from, to: target, replicas }, 'chunk moved');
  return { chunk, status: 'moved', from, to: target, replicas };
}

/** Whether a worker can take a copy now: live, and neither draining nor retired. */
export async function canTake(ctx: CoordinatorContext, worker: string): Promise<boolean> {
  return (await ctx.workers.list()).some((w) => w.id === worker && w.live && !w.draining);
}

/** Chunk counts per worker, from the placement records. */
export async function chunkCounts(ctx: CoordinatorContext, workers: readonly string[]): Promise<Map<string, number>> {
  const res = await Promise.all(workers.map((w) => ctx.cmd.scard(ctx.keys.workerChunks(w))));
  return new Map(workers.map((w, i) => [w, res[i]]));
}

/**
 * Where a chunk leaving a draining worker goes: the live, non-draining worker without a
 * copy that holds the fewest chunks (ties by id), or undefined when every one has a copy.
 */
export async function pickTarget(ctx: CoordinatorContext, replicas: readonly string[]): Promise<string | undefined> {
  const candidates = (await ctx.workers.list())
    .filter((w) => w.live && !w.draining && !replicas.includes(w.id))
    .map((w) => w.id);
  if (candidates.length === 0) return undefined;
  const counts = await chunkCounts(ctx, candidates);
  return candidates.sort((a, b) => counts.get(a)! - counts.get(b)! || (a < b ? -1 : 1))[0];
}

/** One planned move of a rebalance. */
export interface PlannedMove {
  chunk: string;
  from: string;
  to: string;
}

/**
 * Plans a rebalance over the live, non-draining workers: while the fullest holds at
 * least two chunks more than the emptiest, move to the emptiest a committed chunk of the
 * fullest that it lacks. Such a chunk always exists (the fullest holds more chunks than
 * the emptiest, so not all of them are on the emptiest), so the plan ends with counts
 * that differ by at most 1 — unless the only candidates belong to POSTs still open.
 */
export async function planRebalance(
  ctx: CoordinatorContext,
): Promise<{ before: Record<string, number>; after: Record<string, number>; moves: PlannedMove[] }> {
  const workers = (await ctx.workers.list()).filter((w) => w.live && !w.draining).map((w) => w.id);
  const held = new Map<string, Set<string>>();
  for (const w of workers) held.set(w, new Set(await ctx.cmd.smembers(ctx.keys.workerChunks(w))));
  const before = Object.fromEntries(workers.map((w) => [w, held.get(w)!.size]));
  const open = new Set(await ctx.cmd.hkeys(ctx.keys.openPosts));
  const all = [...new Set([...held.values()].flatMap((s) => [...s]))];
  const movable = new Set<string>();
  for (const [c, m] of await readChunkMetas(ctx.cmd, ctx.keys, all)) if (!open.has(m.post)) movable.add(c);
  const moved = new Set<string>();
  const moves: PlannedMove[] = [];
  for (;;) {
    const bySize = [...workers].sort((a, b) => held.get(a)!.size - held.get(b)!.size || (a < b ? -1 : 1));
    const to = bySize[0];
    const from = bySize[bySize.length - 1];
    if (!to || held.get(from)!.size - held.get(to)!.size < 2) break;
    // One move per chunk per plan: a chunk's moves run as one job at a time.
    const chunk = [...held.get(from)!].find((c) => movable.has(c) && !moved.has(c) && !held.get(to)!.has(c));
    if (!chunk) break;
    held.get(from)!.delete(chunk);
    held.get(to)!.add(chunk);
    moved.add(chunk);
    moves.push({ chunk, from, to });
  }
  const after = Object.fromEntries(workers.map((w) => [w, held.get(w)!.size]));
  return { before, after, moves };
}
