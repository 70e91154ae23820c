import { ulid } from 'ulid';
import { DropChunksMessage, SetReplicasMessage } from '../../common/messages';
import type { CoordinatorContext } from '../context';
import type { WorkerView } from '../membership';
import { placeChunk } from '../token-ring';
import { copyVerified, type ChunkMeta } from './chunk-copy';
import { xaddEach } from '../ops';

export type { ChunkMeta } from './chunk-copy';

/** Settings repair needs. */
export interface RepairOptions {
  replicas: number;
  /** Heartbeat age after which a worker is lost for good and its chunks are re-homed. */
  repairAfterMs: number;
  /** How long to wait for the source to send the chunk and the targets to ack it. */
  copyTimeoutMs: number;
}

/** What one repair did. */
export interface RepairOutcome {
  chunk: string;
  status: 'healthy' | 'repaired' | 'gone' | 'uncommitted' | 'no-target';
  replicas?: string[];
  copiedTo?: string[];
  droppedFrom?: string[];
}

/** Workers whose last heartbeat is older than `repairAfterMs`. */
export function lostWorkers(list: readonly WorkerView[], repairAfterMs: number): Set<string> {
  return new Set(list.filter((w) => w.age > repairAfterMs).map((w) => w.id));
}

/**
 * Brings one chunk back to R copies: copies it from a live replica (a FETCH of exactly
 * that chunk) to live workers that lack it, chosen by the token, and checks the copies
 * equal the source ({@link copyVerified}); then tells every holder the new list (it
 * decides who answers reads), records it, and tells
 * lost holders to drop their copy — they apply that from their stream before answering
 * reads again, so a returning worker never adds duplicates. Idempotent: rerunning it on
 * a healthy chunk changes nothing.
 */
export async function repairChunk(ctx: CoordinatorContext, chunk: string, opts: RepairOptions): Promise<RepairOutcome> {
  const raw = await ctx.cmd.hget(ctx.keys.chunks, chunk);
  if (!raw) return { chunk, status: 'gone' };
  const meta = JSON.parse(raw) as ChunkMeta;
  if (await ctx.cmd.hexists(ctx.keys.openPosts, meta.post)) return { chunk, status: 'uncommitted' };
  const list = await ctx.workers.list();
  const live = list.filter((w) => w.live).map((w) => w.id);
  const writable = list.filter((w) => w.live && !w.draining).map((w) => w.id);
  const lost = lostWorkers(list, opts.repairAfterMs);
  const known = new Set(list.map((w) => w.id));
  const dead = meta.replicas.filter((w) => lost.has(w) || !known.has(w));
  const keep = meta.replicas.filter((w) => !dead.includes(w));
  // A draining worker takes no new copies.
  const candidates = writable.filter((w) => !meta.replicas.includes(w));
  // R copies, or as many as there are workers to hold them.
  const want = Math.min(opts.replicas, keep.length + candidates.length);
  if (dead.length === 0 && keep.length >= want) {
    // Only a chunk at full R leaves the set; one short of workers stays for a later sweep.
    if (keep.length >= opts.replicas) {
      await ctx.cmd.zrem(ctx.keys.underReplicated, chunk);
      return { chunk, status: 'healthy', replicas: meta.replicas };
    }
    return { chunk, status: 'no-target', replicas: meta.replicas };
  }
  const token = await ctx.cmd.incr(ctx.keys.token);
  const targets = placeChunk(candidates, token, want - keep.length);
  if (keep.length === 0 && targets.length === 0) return { chunk, status: 'no-target', replicas: meta.replicas };
  const replicas = [...keep, ...targets];
  if (targets.length > 0) {
    const source = meta.replicas.find((w) => live.includes(w));
    if (!source) throw new Error(`chunk ${chunk}: no live replica to copy from (replicas ${meta.replicas.join(', ')}); will retry`);
    // The copies carry the old list (targets not in it): they answer no read until
    // SET_REPLICAS below, sent only once they are verified equal to the source.
    await copyVerified(ctx, meta, chunk, source, targets, meta.replicas, opts.copyTimeoutMs);
  }
  // Before the record, as the copy's own list used to be: a job that dies after the
  // record finds the chunk healthy on retry and would not tell the targets again.
  const setReplicas = Object.assign(new SetReplicasMessage(), { op: ulid(), chunk, replicas, replyTo: ctx.replyTo }).toArgs();
  await xaddEach(ctx.cmd, ctx.keys, replicas, setReplicas);
  const p = ctx.cmd.multi();
  p.hset(ctx.keys.chunks, chunk, JSON.stringify({ ...meta, replicas }));
  for (const w of dead) p.srem(ctx.keys.workerChunks(w), chunk);
  for (const w of targets) p.sadd(ctx.keys.workerChunks(w), chunk);
  // Fewer than R copies (too few live workers): a later sweep tops it up.
  if (replicas.length >= opts.replicas) p.zrem(ctx.keys.underReplicated, chunk);
  else p.zadd(ctx.keys.underReplicated, Date.now(), chunk);
  await p.exec();
  const drop = Object.assign(new DropChunksMessage(), { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs();
  await xaddEach(ctx.cmd, ctx.keys, dead, drop);
  ctx.log.info({ chunk, table: meta.table, from: meta.replicas, to: replicas, copiedTo: targets, droppedFrom: dead }, 'chunk repaired');
  return { chunk, status: 'repaired', replicas, copiedTo: targets, droppedFrom: dead };
}

/** Chunks that need a repair job: those of lost workers and those recorded under-replicated. */
export async function chunksToRepair(ctx: CoordinatorContext, repairAfterMs: number): Promise<{ chunks: string[]; lost: string[] }> {
  const lost = [...lostWorkers(await ctx.workers.list(), repairAfterMs)];
  const out = new Set<string>(await ctx.cmd.zrange(ctx.keys.underReplicated, 0, 9999));
  for (const w of lost) for (const c of await ctx.cmd.smembers(ctx.keys.workerChunks(w))) out.add(c);
  return { chunks: [...out], lost };
}
