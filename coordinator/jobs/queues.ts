import { Queue, Worker as BullWorker, type Job } from 'bullmq';
import { createRedis, type DstoreRedis } from '../../common/redis';
import type { CoordinatorContext } from '../context';
import { cleanupAbandonedPosts } from './cleanup';
import { chunksToRepair, repairChunk, type RepairOptions } from './repair';
import { scrub } from './scrub';

/** Options of the background jobs. */
export interface JobsOptions extends RepairOptions {
  redisUrl: string;
  /** How often the sweep looks for lost workers, under-replicated chunks and abandoned POSTs. */
  sweepMs: number;
  /** Heartbeat age after which a coordinator is dead and its open POSTs are aborted. */
  coordinatorTimeoutMs: number;
  /** How often scrub compares replicas; 0 turns it off. */
  scrubMs: number;
}

/** The BullMQ queue names (under `<prefix>:bull`). */
export const QUEUES = { repair: 'repair', scrub: 'scrub' } as const;

/**
 * Background work as BullMQ jobs, processed by every coordinator: a scheduled `sweep`
 * aborts POSTs abandoned by dead coordinators, finds chunks to repair and adds one
 * `chunk` job per chunk, with the chunk id as job id,
 * so two coordinators never repair the same chunk at once; jobs retry with backoff.
 */
export class Jobs {
  private queue?: Queue;
  private worker?: BullWorker;
  private scrubQueue?: Queue;
  private scrubWorker?: BullWorker;
  private readonly conns: DstoreRedis[] = [];

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly opts: JobsOptions,
  ) {}

  private connection(role: string): DstoreRedis {
    // BullMQ needs maxRetriesPerRequest: null, which the 'blocking' role gives.
    const c = createRedis({ url: this.opts.redisUrl, name: `${this.ctx.keys.prefix}:bull:${role}`, role: 'blocking' });
    c.on('error', (e) => this.ctx.log.debug({ err: e }, 'bullmq connection error'));
    this.conns.push(c);
    return c;
  }

  async start(): Promise<void> {
    const prefix = this.ctx.keys.bullPrefix;
    this.queue = new Queue(QUEUES.repair, { connection: this.connection('queue'), prefix });
    await this.queue.upsertJobScheduler('sweep', { every: this.opts.sweepMs }, { name: 'sweep', opts: { removeOnComplete: 100, removeOnFail: 100 } });
    this.worker = new BullWorker(QUEUES.repair, (job) => this.process(job), { connection: this.connection('worker'), prefix, concurrency: 1 });
    this.worker.on('failed', (job, err) => this.ctx.log.warn({ job: job?.id, err: err.message }, 'repair job failed; it will be retried'));
    this.scrubQueue = new Queue(QUEUES.scrub, { connection: this.connection('scrub-queue'), prefix });
    if (this.opts.scrubMs > 0) {
      await this.scrubQueue.upsertJobScheduler('scrub', { every: this.opts.scrubMs }, { name: 'scrub', opts: { removeOnComplete: 50, removeOnFail: 50 } });
    } else {
      await this.scrubQueue.removeJobScheduler('scrub');
    }
    this.scrubWorker = new BullWorker(QUEUES.scrub, () => scrub(this.ctx, this.opts.copyTimeoutMs), {
      connection: this.connection('scrub-worker'),
      prefix,
      concurrency: 1,
    });
    this.scrubWorker.on('failed', (job, err) => this.ctx.log.warn({ job: job?.id, err: err.message }, 'scrub failed'));
  }

  private async process(job: Job): Promise<unknown> {
    if (job.name === 'sweep') {
      const aborted = await cleanupAbandonedPosts(this.ctx, this.opts.coordinatorTimeoutMs);
      const { chunks, lost } = await chunksToRepair(this.ctx, this.opts.repairAfterMs);
      if (chunks.length > 0) {
        this.ctx.log.info({ lost, chunks: chunks.length }, 'sweep: queueing chunk repairs');
        await this.queue!.addBulk(
          chunks.map((chunk) => ({
            name: 'chunk',
            data: { chunk },
            // A failed job is removed (and logged) so that the next sweep can queue the chunk again.
            opts: { jobId: `chunk-${chunk}`, attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: true },
          })),
        );
      }
      return { lost, queued: chunks.length, aborted };
    }
    return repairChunk(this.ctx, (job.data as { chunk: string }).chunk, this.opts);
  }

  async stop(): Promise<void> {
    await Promise.all([this.worker?.close(), this.scrubWorker?.close()]);
    await Promise.all([this.queue?.close(), this.scrubQueue?.close()]);
    await Promise.all(this.conns.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
