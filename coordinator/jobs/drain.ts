import { redisNow } from '../../common/redis';
import type { CoordinatorContext } from '../context';
import { conflict, notFound } from '../errors';
import { canTake, moveChunk, pickTarget, type MoveOutcome } from './move';
import { readChunkMeta } from '../placement';

/**
 * After the draining mark is set, how long a worker keeps its mark before it can be
 * retired: coordinators cache the list of workers that take new chunks for 250 ms, so a
 * POST may still place a chunk on it just after the mark; the drain moves that one too.
 */
export const RETIRE_GRACE_MS = 2000;

/** The draining mark (`<prefix>:workers:draining`). */
export interface DrainMark {
  /** Redis server time (ms) the drain was asked for. */
  at: number;
  /** Accept chunks left with fewer than R copies. */
  force: boolean;
}

/** Where a worker stands in a drain. */
export interface DrainStatus {
  worker: string;
  state: 'active' | 'draining' | 'retired';
  /** Chunks still placed on it. */
  chunks: number;
  force?: boolean;
}

/**
 * Marks a worker draining: from now on no new chunk is placed on it, and the repair
 * sweep moves each of its chunks to another worker, then retires it. Refused (409) when
 * fewer than `replicas` other live workers could hold its chunks, unless `force`; always
 * refused when no other live worker is left. Unknown ids are a 404.
 */
export async function requestDrain(
  ctx: CoordinatorContext,
  id: string,
  force: boolean,
  replicas: number,
): Promise<DrainStatus & { chunkIds: string[] }> {
  const list = await ctx.workers.list();
  const w = list.find((x) => x.id === id);
  if (!w) {
    if (await ctx.cmd.hexists(ctx.keys.retired, id)) throw conflict(`worker ${id} was already drained and retired`);
    const known = list.map((x) => x.id);
    throw notFound(
      `no worker ${JSON.stringify(id)}; known workers: ${known.length ? known.join(', ') : 'none'} (see dstore workers)`,
    );
  }
  const others = list.filter((x) => x.live && !x.draining && x.id !== id).map((x) => x.id);
  if (others.length === 0) {
    throw conflict(
      `cannot drain ${id}: no other live worker could take its chunks; start another worker first (dstore worker)`,
      { liveWorkers: others },
    );
  }
  if (others.length < replicas && !force) {
    throw conflict(
      `draining ${id} would leave chunks with fewer than DSTORE_REPLICAS=${replicas} copies: only ${others.length} other live worker(s) (${others.join(', ')}) can hold them; start more workers, or force it (--force / {"force": true})`,
      { liveWorkers: others },
    );
  }
  const mark: DrainMark = { at: await redisNow(ctx.cmd), force };
  await ctx.cmd.hsetnx(ctx.keys.draining, id, JSON.stringify(mark));
  // This coordinator places nothing more on it; others within their 250 ms cache.
  ctx.workers.invalidate();
  const chunkIds = await ctx.cmd.smembers(ctx.keys.workerChunks(id));
  ctx.log.info({ worker: id, chunks: chunkIds.length, force }, 'drain requested');
  return { worker: id, state: 'draining', chunks: chunkIds.length, force, chunkIds };
}

/** Progress of a drain (or `active` for a worker that is not being drained). */
export async function drainStatus(ctx: CoordinatorContext, id: string): Promise<DrainStatus> {
  const [[, mark], [, retired], [, chunks]] = (await ctx.cmd
    .multi()
    .hget(ctx.keys.draining, id)
    .hexists(ctx.keys.retired, id)
    .scard(ctx.keys.workerChunks(id))
    .exec()) as [[null, string | null], [null, number], [null, number]];
  if (retired) return { worker: id, state: 'retired', chunks };
  if (mark) return { worker: id, state: 'draining', chunks, force: (JSON.parse(mark) as DrainMark).force };
  if (!(await ctx.workers.list()).some((w) => w.id === id))
    throw notFound(`no worker ${JSON.stringify(id)} (see dstore workers)`);
  return { worker: id, state: 'active', chunks };
}

/** Chunks placed on draining workers (for the sweep). */
export async function chunksToDrain(ctx: CoordinatorContext): Promise<string[]> {
  const out: string[] = [];
  for (const w of await ctx.cmd.hkeys(ctx.keys.draining))
    out.push(...(await ctx.cmd.smembers(ctx.keys.workerChunks(w))));
  return out;
}

/**
 * Moves one chunk off the draining worker that holds it, if any. The target is chosen
 * once and kept through `persist` (the job's data), so a retried or resumed job finishes
 * the same move. Without a target (every other live worker already holds a copy) the
 * chunk is only dropped from the drained worker when the drain was forced.
 */
export async function drainChunk(
  ctx: CoordinatorContext,
  chunk: string,
  planned: string | undefined,
  persist: (to: string) => Promise<void>,
  copyTimeoutMs: number,
): Promise<MoveOutcome | undefined> {
  const meta = await readChunkMeta(ctx.cmd, ctx.keys, chunk);
  if (!meta) return undefined;
  const marks = await ctx.cmd.hgetall(ctx.keys.draining);
  const from = meta.replicas.find((w) => marks[w] !== undefined);
  if (!from) return undefined;
  let to = planned;
  // A target chosen earlier that has since gone, is draining itself, or got a copy from a
  // repair meanwhile, is chosen again.
  if (to !== undefined && (meta.replicas.includes(to) || !(await canTake(ctx, to)))) to = undefined;
  if (to === undefined) {
    to = await pickTarget(ctx, meta.replicas);
    if (to !== undefined) await persist(to);
  }
  if (to === undefined && !(JSON.parse(marks[from]) as DrainMark).force) {
    throw new Error(
      `chunk ${chunk}: no live worker without a copy can take it from ${from}; start a worker, or drain with --force`,
    );
  }
  return moveChunk(ctx, chunk, from, to, copyTimeoutMs);
}

/**
 * Retires drained workers: those marked draining for at least {@link RETIRE_GRACE_MS}
 * with no chunk left. A retired worker is no longer listed, live or known (its process,
 * if still running, holds nothing and may be stopped); the mark moves to `retired`.
 */
export async function retireDrained(ctx: CoordinatorContext): Promise<string[]> {
  const marks = await ctx.cmd.hgetall(ctx.keys.draining);
  const now = await redisNow(ctx.cmd);
  const out: string[] = [];
  for (const [id, raw] of Object.entries(marks)) {
    const mark = JSON.parse(raw) as DrainMark;
    if (now - mark.at < RETIRE_GRACE_MS) continue;
    if ((await ctx.cmd.scard(ctx.keys.workerChunks(id))) > 0) continue;
    await ctx.cmd
      .multi()
      .hdel(ctx.keys.draining, id)
      .hset(ctx.keys.retired, id, JSON.stringify({ at: now, drainedFrom: mark.at }))
      .zrem(ctx.keys.workers, id)
      .hdel(ctx.keys.workerStatus, id)
      .exec();
    ctx.workers.invalidate();
    ctx.log.info({ worker: id, ms: now - mark.at }, 'worker drained and retired');
    out.push(id);
  }
  return out;
}
