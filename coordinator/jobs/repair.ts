import { ulid } from 'ulid';
import {
  build,
  DIGEST_NOT_HELD,
  DIGEST_UNCOMMITTED,
  DropChunksMessage,
  SetReplicasMessage,
} from '../../common/messages';
import type { CoordinatorContext } from '../context';
import type { WorkerView } from '../membership';
import { placeChunk } from '../token-ring';
import { collectDigests, copyVerified } from './chunk-copy';
import { xaddEach } from '../ops';
import { readChunkRecord, setReplicas } from '../placement';
import { ScriptError, SCRIPT_CODES } from '../../common/script-codes';

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
  /**
   * `healthy`: R live copies, each checked; `repaired`: copies made or dropped; `gone`: no
   * placement (aborted, dropped); `uncommitted`: its POST is still open; `waiting`: too few
   * workers to reach R, or a replica is down and cannot be checked (checked again later).
   */
  status: 'healthy' | 'repaired' | 'gone' | 'uncommitted' | 'waiting';
  replicas?: string[];
  copiedTo?: string[];
  droppedFrom?: string[];
  /** Live replicas that did not hold the chunk committed (a lost disk, a copy that never landed). */
  lacking?: string[];
}

/** How long a chunk that cannot be brought to R yet waits before it is checked again. */
export const RECHECK_MS = 30_000;

/** Workers whose last heartbeat is older than `repairAfterMs`. */
export function lostWorkers(list: readonly WorkerView[], repairAfterMs: number): Set<string> {
  return new Set(list.filter((w) => w.age > repairAfterMs).map((w) => w.id));
}

/**
 * Brings one chunk back to R verified copies. The placement record is a claim, not proof:
 * the live replicas are first asked for the chunk's digest, and one that does not hold it
 * committed (its disk was lost, a COMMIT never landed) counts as missing, like a lost
 * worker's copy. Then it copies the chunk from a replica that has it to live workers that
 * lack it, chosen by the token, and checks the copies equal the source
 * ({@link copyVerified}); then records the new list (reads are routed by it), tells the
 * holders, and tells those that no longer count to drop what they have. Idempotent:
 * rerunning it on a healthy chunk changes nothing.
 */
export async function repairChunk(ctx: CoordinatorContext, chunk: string, opts: RepairOptions): Promise<RepairOutcome> {
  const meta = await readChunkRecord(ctx.cmd, ctx.keys, chunk);
  if (!meta) {
    await ctx.cmd.zrem(ctx.keys.underReplicated, chunk);
    return { chunk, status: 'gone' };
  }
  if (await ctx.cmd.hexists(ctx.keys.openPosts, meta.post)) return { chunk, status: 'uncommitted' };
  const list = await ctx.workers.list();
  const live = new Set(list.filter((w) => w.live).map((w) => w.id));
  const writable = list.filter((w) => w.live && !w.draining).map((w) => w.id);
  const lost = lostWorkers(list, opts.repairAfterMs);
  const known = new Set(list.map((w) => w.id));
  const dead = meta.replicas.filter((w) => lost.has(w) || !known.has(w));
  // What the live replicas really hold, after their fences.
  const asked = meta.replicas.filter((w) => live.has(w) && !dead.includes(w));
  const { digests, failed } = asked.length
    ? await collectDigests(
        ctx,
        meta.table,
        asked.map((worker) => ({ worker, chunks: [chunk] })),
        opts.copyTimeoutMs,
      )
    : { digests: new Map(), failed: new Map<string, string>() };
  const lines = digests.get(chunk);
  const verified = asked.filter((w) => lines?.get(w)?.actual !== undefined && !lines.get(w)!.error);
  const lacking = asked.filter(
    (w) =>
      !failed.has(w) &&
      !verified.includes(w) &&
      lines?.get(w)?.error !== undefined &&
      !isReadError(lines.get(w)!.error!),
  );
  const keep = meta.replicas.filter((w) => !dead.includes(w) && !lacking.includes(w));
  // A draining worker takes no new copies; a replica that lacked it may take it again.
  const candidates = writable.filter((w) => !keep.includes(w));
  const want = Math.min(opts.replicas, keep.length + candidates.length);
  const recheck = () => ctx.cmd.zadd(ctx.keys.underReplicated, Date.now() + RECHECK_MS, chunk);
  if (dead.length === 0 && lacking.length === 0 && keep.length >= want) {
    if (keep.length >= opts.replicas && verified.length === keep.length) {
      await ctx.cmd.zrem(ctx.keys.underReplicated, chunk);
      return { chunk, status: 'healthy', replicas: meta.replicas };
    }
    // Short of workers, or a replica is down (it applies its stream when it returns).
    await recheck();
    return { chunk, status: 'waiting', replicas: meta.replicas };
  }
  const token = await ctx.cmd.incr(ctx.keys.token);
  const targets = placeChunk(candidates, token, Math.max(0, want - keep.length));
  const replicas = [...keep, ...targets];
  if (targets.length > 0) {
    const source = verified[0];
    if (!source) {
      await recheck();
      if (keep.length === 0)
        throw new Error(
          `chunk ${chunk}: no replica holds it (replicas ${meta.replicas.join(', ')}; lacking: ${lacking.join(', ') || 'none'}; lost: ${dead.join(', ') || 'none'}); it is lost unless one of them returns with its copy`,
        );
      throw new Error(
        `chunk ${chunk}: no live replica could be checked to copy from (replicas ${meta.replicas.join(', ')}); will retry`,
      );
    }
    await copyVerified(ctx, meta, chunk, source, targets, meta.replicas, opts.copyTimeoutMs);
  }
  const gone = [...dead, ...lacking].filter((w) => !replicas.includes(w));
  // Before the record: a worker leaving the list holds no copy a read relies on (it is lost,
  // or lacks the chunk), and a copy a later job makes there lands behind this drop on its
  // stream, so the drop can never remove a copy recorded after it.
  const drop = build(DropChunksMessage, { op: ulid(), chunks: [chunk], replyTo: ctx.replyTo }).toArgs();
  await xaddEach(ctx, gone, drop);
  // Fewer than R copies (too few live workers): checked again later.
  const under = replicas.length >= opts.replicas ? 'clear' : { dueMs: Date.now() + RECHECK_MS };
  await placementChange(chunk, 'repairing', () => setReplicas(ctx.cmd, ctx.keys, chunk, meta, replicas, under));
  if (replicas.length > 0) {
    const told = build(SetReplicasMessage, { op: ulid(), chunk, replicas, replyTo: ctx.replyTo }).toArgs();
    await xaddEach(ctx, replicas, told);
  }
  ctx.log.info(
    { chunk, table: meta.table, from: meta.replicas, to: replicas, copiedTo: targets, droppedFrom: gone, lacking },
    'chunk repaired',
  );
  return { chunk, status: 'repaired', replicas, copiedTo: targets, droppedFrom: gone, lacking };
}

/**
 * Runs a compare-and-set of a placement record, turning a refusal into an error that names
 * the chunk: the job fails and BullMQ runs it again on the record as it now is.
 */
export async function placementChange(chunk: string, doing: string, change: () => Promise<void>): Promise<void> {
  try {
    await change();
  } catch (e) {
    if (!(e instanceof ScriptError)) throw e;
    const why =
      e.code === SCRIPT_CODES.TARGET_UNAVAILABLE
        ? 'a worker it was copied to is now draining or retired'
        : 'another job changed its placement meanwhile';
    throw new Error(`chunk ${chunk}: not recorded after ${doing}: ${why}; will retry`);
  }
}

/** A digest error that is not "not held" / "not committed": the copy is there but unreadable (scrub's job). */
function isReadError(error: string): boolean {
  return error !== DIGEST_NOT_HELD && error !== DIGEST_UNCOMMITTED;
}

/**
 * Chunks that need a repair job: those of lost workers and those recorded under-replicated
 * that are due, or all of these when the workers that can take copies changed since the
 * last sweep (a worker came back or joined: chunks waiting for a target get one now).
 */
export async function chunksToRepair(
  ctx: CoordinatorContext,
  repairAfterMs: number,
): Promise<{ chunks: string[]; lost: string[] }> {
  const list = await ctx.workers.list();
  const lost = [...lostWorkers(list, repairAfterMs)];
  const writable = list
    .filter((w) => w.live && !w.draining)
    .map((w) => w.id)
    .join(',');
  const before = await ctx.cmd.set(ctx.keys.repairWorkers, writable, 'GET');
  const due = before === writable ? Date.now() : '+inf';
  const out = new Set<string>(await ctx.cmd.zrangebyscore(ctx.keys.underReplicated, '-inf', due, 'LIMIT', 0, 10_000));
  for (const w of lost) for (const c of await ctx.cmd.smembers(ctx.keys.workerChunks(w))) out.add(c);
  return { chunks: [...out], lost };
}
