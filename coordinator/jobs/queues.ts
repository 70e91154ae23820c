import { Queue, Worker as BullWorker, type Job } from 'bullmq';
import type { ClusterNode } from '../../common/config';
import { createRedis, type DstoreRedis } from '../../common/redis';
import type { CoordinatorContext } from '../context';
import { cleanupAbandonedPosts, finishPendingWrites } from './cleanup';
import { chunksToDrain, drainChunk, retireDrained } from './drain';
import { moveChunk, type PlannedMove } from './move';
import { chunksToRepair, repairChunk, type RepairOptions } from './repair';
import { scrub } from './scrub';
import { reconcileShards } from './shards';

/** Options of the background jobs. */
export interface JobsOptions extends RepairOptions {
  redisUrl: string;
  /** CA for a rediss:// Redis (`REDIS_TLS_CA_FILE`). */
  redisTlsCa?: string;
  redisClusterNodes?: ClusterNode[];
  /** How often the sweep looks for lost workers and under-replicated chunks, and clean-up for abandoned POSTs. */
  sweepMs: number;
  /** Heartbeat age after which a coordinator is dead and its open POSTs are aborted. */
  coordinatorTimeoutMs: number;
  /** How often scrub compares replicas; 0 turns it off. */
  scrubMs: number;
}

/** The BullMQ queue names (under `<prefix>:bull`). */
export const QUEUES = { repair: 'repair', scrub: 'scrub', cleanup: 'cleanup' } as const;

/**
 * Lock and stalled-check times of every job worker. A coordinator killed mid-job leaves the
 * job active until its lock expires and a stalled check moves it back: with BullMQ's
 * defaults (30 s + 30 s) a killed coordinator's sweep could hold up the next sweep, and so
 * repairs and drain retirements, for a minute (nemesis seed 12). Locks are renewed every
 * half lock by a timer, so a long copy keeps its job as long as its process lives.
 */
const JOB_LOCKS = { lockDuration: 10_000, stalledInterval: 5_000 } as const;

/** Job options of a per-chunk job: the job id is the chunk's, so one job per chunk runs at a time. */
function chunkJobOpts(chunk: string) {
  // A failed job is removed (and logged) so that the next sweep can queue the chunk again.
  return {
    jobId: `chunk-${chunk}`,
    attempts: 5,
    backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: true,
    removeOnFail: true,
  };
}

/**
 * Background work as BullMQ jobs in three queues, processed by every coordinator. In
 * `repair`, a scheduled `sweep` finds chunks to repair or to move off draining workers and
 * adds one `chunk` job per chunk, and retires drained workers. In `cleanup`, a scheduled
 * job aborts (or finishes committing) POSTs left open by dead coordinators. In `scrub`, a
 * scheduled job compares the replicas of every chunk.
 * Rebalance adds `move` jobs. Every per-chunk job has the chunk id as job id, so two
 * coordinators never repair or move the same chunk at once; jobs retry with backoff.
 * A coordinator that dies mid-job leaves it to BullMQ's stalled-job check and the next
 * sweep, so a drain resumes on its own.
 */
export class Jobs {
  private queue?: Queue;
  private worker?: BullWorker;
  private scrubQueue?: Queue;
  private scrubWorker?: BullWorker;
  private cleanupQueue?: Queue;
  private cleanupWorker?: BullWorker;
  private readonly conns: DstoreRedis[] = [];

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly opts: JobsOptions,
  ) {}

  private connection(role: string): DstoreRedis {
    // BullMQ needs maxRetriesPerRequest: null, which the 'blocking' role gives.
    const c = createRedis({
      url: this.opts.redisUrl,
      clusterNodes: this.opts.redisClusterNodes,
      tlsCa: this.opts.redisTlsCa,
      name: `${this.ctx.keys.prefix}:bull:${role}`,
      role: 'blocking',
    });
    c.on('error', (e) => this.ctx.log.debug({ err: e }, 'bullmq connection error'));
    this.conns.push(c);
    return c;
  }

  async start(): Promise<void> {
    const prefix = this.ctx.keys.bullPrefix;
    this.queue = new Queue(QUEUES.repair, { connection: this.connection('queue'), prefix });
    await this.queue.upsertJobScheduler(
      'sweep',
      { every: this.opts.sweepMs },
      { name: 'sweep', opts: { removeOnComplete: 100, removeOnFail: 100 } },
    );
    // Per-chunk jobs are independent (one job id per chunk): a few run at once to drain faster.
    this.worker = new BullWorker(QUEUES.repair, (job) => this.process(job), {
      connection: this.connection('worker'),
      prefix,
      concurrency: 4,
      ...JOB_LOCKS,
    });
    this.worker.on('failed', (job, err) => {
      this.ctx.log.warn({ job: job?.id, err: err.message }, 'repair job failed; it will be retried');
      // A planned move that failed for good is no longer pending (rebalance can be run again).
      if (job?.name === 'move' && job.attemptsMade >= (job.opts.attempts ?? 1)) {
        this.ctx.cmd.srem(this.ctx.keys.movesPending, (job.data as PlannedMove).chunk).catch(() => undefined);
      }
    });
    this.scrubQueue = new Queue(QUEUES.scrub, { connection: this.connection('scrub-queue'), prefix });
    if (this.opts.scrubMs > 0) {
      await this.scrubQueue.upsertJobScheduler(
        'scrub',
        { every: this.opts.scrubMs },
        { name: 'scrub', opts: { removeOnComplete: 50, removeOnFail: 50 } },
      );
    } else {
      await this.scrubQueue.removeJobScheduler('scrub');
    }
    this.scrubWorker = new BullWorker(QUEUES.scrub, () => scrub(this.ctx, this.opts.copyTimeoutMs), {
      connection: this.connection('scrub-worker'),
      prefix,
      concurrency: 1,
      ...JOB_LOCKS,
    });
    this.scrubWorker.on('failed', (job, err) => this.ctx.log.warn({ job: job?.id, err: err.message }, 'scrub failed'));
    this.cleanupQueue = new Queue(QUEUES.cleanup, { connection: this.connection('cleanup-queue'), prefix });
    await this.cleanupQueue.upsertJobScheduler(
      'cleanup',
      { every: this.opts.sweepMs },
      { name: 'cleanup', opts: { removeOnComplete: 100, removeOnFail: 100 } },
    );
    this.cleanupWorker = new BullWorker(
      QUEUES.cleanup,
      async () => ({
        aborted: await cleanupAbandonedPosts(this.ctx, this.opts.coordinatorTimeoutMs),
        finished: await finishPendingWrites(this.ctx),
      }),
      {
        connection: this.connection('cleanup-worker'),
        prefix,
        concurrency: 1,
        ...JOB_LOCKS,
      },
    );
    this.cleanupWorker.on('failed', (job, err) =>
      this.ctx.log.warn({ job: job?.id, err: err.message }, 'clean-up failed; the next run retries'),
    );
  }

  /** The queues, for the dashboard (`/admin/queues`); empty before {@link start}. */
  queues(): Queue[] {
    return [this.queue, this.cleanupQueue, this.scrubQueue].filter((q): q is Queue => q !== undefined);
  }

  /** Job counts of every queue by state (waiting, active, delayed, failed, …). */
  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const q of this.queues())
      out[q.name] = await q.getJobCounts(
        'waiting',
        'active',
        'delayed',
        'prioritized',
        'waiting-children',
        'completed',
        'failed',
        'paused',
      );
    return out;
  }

  private async process(job: Job): Promise<unknown> {
    if (job.name === 'sweep') {
      // First: a worker serving a new shard lost its chunks, which this sweep then repairs.
      const incarnations = await reconcileShards(this.ctx);
      const { chunks, lost } = await chunksToRepair(this.ctx, this.opts.repairAfterMs);
      const draining = await chunksToDrain(this.ctx);
      const all = [...new Set([...chunks, ...draining])];
      if (all.length > 0) {
        this.ctx.log.info(
          { lost, chunks: chunks.length, draining: draining.length },
          'sweep: queueing chunk repairs and moves',
        );
        await this.queueChunks(all);
      }
      const retired = await retireDrained(this.ctx);
      return { lost, queued: all.length, retired, incarnations };
    }
    if (job.name === 'move') {
      const m = job.data as PlannedMove;
      const out = await moveChunk(this.ctx, m.chunk, m.from, m.to, this.opts.copyTimeoutMs);
      if (out.status === 'uncommitted') throw new Error(`chunk ${m.chunk}: its POST is still open; will retry`);
      await this.ctx.cmd.srem(this.ctx.keys.movesPending, m.chunk);
      return out;
    }
    const data = job.data as { chunk: string; to?: string };
    const repaired = await repairChunk(this.ctx, data.chunk, this.opts);
    if (repaired.status === 'repaired' || repaired.status === 'gone' || repaired.status === 'uncommitted')
      return repaired;
    // Healthy (or short of workers): move it off a draining worker, if one holds it.
    const moved = await drainChunk(
      this.ctx,
      data.chunk,
      data.to,
      (to) => job.updateData({ ...data, to }),
      this.opts.copyTimeoutMs,
    );
    return moved ?? repaired;
  }

  /**
   * Queues a `chunk` job (repair, or move off a draining worker) per chunk; a chunk with a job already queued is
   * skipped.
   */
  async queueChunks(chunks: string[]): Promise<void> {
    await this.queue!.addBulk(chunks.map((chunk) => ({ name: 'chunk', data: { chunk }, opts: chunkJobOpts(chunk) })));
  }

  /** Planned moves not done yet (a chunk whose job is gone, done or failed for good, is forgotten). */
  async pendingMoves(): Promise<number> {
    const chunks = await this.ctx.cmd.smembers(this.ctx.keys.movesPending);
    let n = 0;
    for (const c of chunks) {
      if (await this.queue!.getJob(`chunk-${c}`)) n++;
      else await this.ctx.cmd.srem(this.ctx.keys.movesPending, c);
    }
    return n;
  }

  /** Queues the moves of a rebalance, recording them in `<prefix>:moves:pending` until done. */
  async queueMoves(moves: PlannedMove[]): Promise<void> {
    if (moves.length === 0) return;
    await this.ctx.cmd.sadd(this.ctx.keys.movesPending, ...moves.map((m) => m.chunk));
    await this.queue!.addBulk(moves.map((m) => ({ name: 'move', data: m, opts: chunkJobOpts(m.chunk) })));
  }

  async stop(): Promise<void> {
    await Promise.all([this.worker?.close(), this.scrubWorker?.close(), this.cleanupWorker?.close()]);
    await Promise.all([this.queue?.close(), this.scrubQueue?.close(), this.cleanupQueue?.close()]);
    await Promise.all(this.conns.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
