import { ulid } from 'ulid';
import { CommitMessage, DropChunksMessage, PostMessage, SetReplicasMessage, type PostAckMessage } from '../../common/messages';
import type { CoordinatorContext } from '../context';
import { FetchRound } from '../fetch-round';
import type { WorkerView } from '../membership';
import { placeChunk } from '../token-ring';

/** Placement record of a chunk (`<prefix>:chunks`). */
export interface ChunkMeta {
  table: string;
  post: string;
  replicas: string[];
  rows: number;
}

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
 * that chunk) to live workers that lack it, chosen by the token, then records the new
 * replica list, tells every holder the new list (it decides who answers reads), and tells
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
  const lost = lostWorkers(list, opts.repairAfterMs);
  const known = new Set(list.map((w) => w.id));
  const dead = meta.replicas.filter((w) => lost.has(w) || !known.has(w));
  const keep = meta.replicas.filter((w) => !dead.includes(w));
  const candidates = live.filter((w) => !meta.replicas.includes(w));
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
    const lines = await copyOut(ctx, meta.table, chunk, source, opts.copyTimeoutMs);
    if (lines.length > 0) await copyIn(ctx, meta, chunk, replicas, targets, lines, opts.copyTimeoutMs);
  }
  const p = ctx.cmd.multi();
  p.hset(ctx.keys.chunks, chunk, JSON.stringify({ ...meta, replicas }));
  for (const w of dead) p.srem(ctx.keys.workerChunks(w), chunk);
  for (const w of targets) p.sadd(ctx.keys.workerChunks(w), chunk);
  // Fewer than R copies (too few live workers): a later sweep tops it up.
  if (replicas.length >= opts.replicas) p.zrem(ctx.keys.underReplicated, chunk);
  else p.zadd(ctx.keys.underReplicated, Date.now(), chunk);
  await p.exec();
  const ops = ctx.cmd.pipeline();
  const setReplicas = Object.assign(new SetReplicasMessage(), { op: ulid(), chunk, replicas, replyTo: ctx.replyTo }).toArgs();
  for (const w of keep) ops.xadd(ctx.keys.workerOps(w), '*', ...setReplicas);
  const drop = Object.assign(new DropChunksMessage(), { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs();
  for (const w of dead) ops.xadd(ctx.keys.workerOps(w), '*', ...drop);
  await ops.exec();
  ctx.log.info({ chunk, table: meta.table, from: meta.replicas, to: replicas, copiedTo: targets, droppedFrom: dead }, 'chunk repaired');
  return { chunk, status: 'repaired', replicas, copiedTo: targets, droppedFrom: dead };
}

/** Reads every row of one chunk from one worker. */
export async function copyOut(ctx: CoordinatorContext, table: string, chunk: string, source: string, timeoutMs: number): Promise<string[]> {
  const round = new FetchRound(ctx, table, [source], {}, timeoutMs, [chunk]);
  const lines: string[] = [];
  try {
    await round.publish();
    for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) if (e.kind === 'batch') lines.push(...e.resp.rows);
  } finally {
    round.close();
  }
  if (round.failed.size > 0) throw new Error(`chunk ${chunk}: copying from ${source} failed: ${[...round.failed.values()].join('; ')}`);
  return lines;
}

/**
 * Writes a chunk to `targets`, committed, and waits for their acks. With `replace`, each
 * target first drops its copy, in the same MULTI, so that no read fence can fall between
 * the drop and the new copy.
 */
export async function copyIn(
  ctx: CoordinatorContext,
  meta: ChunkMeta,
  chunk: string,
  replicas: string[],
  targets: string[],
  lines: string[],
  timeoutMs: number,
  replace = false,
): Promise<void> {
  const ids = lines.map((l) => (JSON.parse(l) as { _id: string })._id);
  const post = Object.assign(new PostMessage(), { chunk, post: meta.post, table: meta.table, replicas, replyTo: ctx.replyTo, ids, rows: lines }).toArgs();
  const commit = Object.assign(new CommitMessage(), { op: ulid(), post: meta.post, replyTo: ctx.replyTo }).toArgs();
  const acked = new Set<string>();
  let fail: string | undefined;
  let wake: () => void = () => undefined;
  const unlisten = ctx.router.listen('post', meta.post, (m) => {
    const a = m as PostAckMessage;
    if (a.chunk !== chunk || !targets.includes(a.worker)) return;
    if (a.status === 'error') fail = `${a.worker}: ${a.error}`;
    else acked.add(a.worker);
    wake();
  });
  try {
    const drop = Object.assign(new DropChunksMessage(), { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs();
    const p = ctx.cmd.multi();
    for (const w of targets) {
      if (replace) p.xadd(ctx.keys.workerOps(w), '*', ...drop);
      p.xadd(ctx.keys.workerOps(w), '*', ...post).xadd(ctx.keys.workerOps(w), '*', ...commit);
    }
    await p.exec();
    const deadline = Date.now() + timeoutMs;
    while (acked.size < targets.length && !fail && Date.now() < deadline) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  } finally {
    unlisten();
  }
  if (fail) throw new Error(`chunk ${chunk}: copy refused by ${fail}`);
  if (acked.size < targets.length) throw new Error(`chunk ${chunk}: ${targets.filter((t) => !acked.has(t)).join(', ')} did not ack the copy in ${timeoutMs} ms`);
}

/** Chunks that need a repair job: those of lost workers and those recorded under-replicated. */
export async function chunksToRepair(ctx: CoordinatorContext, repairAfterMs: number): Promise<{ chunks: string[]; lost: string[] }> {
  const lost = [...lostWorkers(await ctx.workers.list(), repairAfterMs)];
  const out = new Set<string>(await ctx.cmd.zrange(ctx.keys.underReplicated, 0, 9999));
  for (const w of lost) for (const c of await ctx.cmd.smembers(ctx.keys.workerChunks(w))) out.add(c);
  return { chunks: [...out], lost };
}
