import * as crypto from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { CoordinatorOptions } from '../common/config';
import { makeKeys, type Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { closeAll, createRedis, type DstoreRedis } from '../common/redis';
import { buildServer } from './api/server';
import { Catalogue } from './catalogue';
import { readClusterStatus, type ClusterStatus } from './cluster-status';
import type { CoordinatorContext } from './context';
import { TableEncryption } from './encryption';
import { FetchMerger } from './fetch-merger';
import { CursorCodec } from './cursor';
import { QueryService } from './query-service';
import { FetchQueue } from './fetch-round';
import { Jobs } from './jobs/queues';
import { Ingest } from './ingest';
import { WorkerDirectory } from './membership';
import { CoordinatorMetrics } from './metrics';
import { Mutations } from './mutations';
import { IdIndex } from './id-index';
import { normalizeQuery } from '../common/query';
import { ReplyRouter } from './reply-router';
import { Backups } from './backup';
import { ChangeFeed } from './changes';

/**
 * A coordinator: the HTTP API over the catalogue, ingest, reads and mutations. It
 * holds no state Redis does not hold, so any number can run side by side; each reads
 * its own reply stream (`<prefix>:coord:{<id>}:replies`).
 */
export class Coordinator {
  readonly id: string;
  readonly keys: Keys;
  readonly cmd: DstoreRedis;
  private readonly replyReader: DstoreRedis;
  readonly router: ReplyRouter;
  readonly workers: WorkerDirectory;
  readonly catalogue: Catalogue;
  readonly ingest: Ingest;
  readonly fetch: FetchMerger;
  /** Reads as the HTTP API runs them: checked, decrypted, held to their limits. */
  readonly queries: QueryService;
  readonly mutations: Mutations;
  /** Encrypted columns (DSTORE_ENCRYPTION_KEY). */
  readonly encryption: TableEncryption;
  /** Tables' change streams, for watchers. */
  readonly changes: ChangeFeed;
  /** Backups in progress (coordinator/backup.ts). */
  readonly backups: Backups;
  /** Repair (and later scrub, clean-up) as BullMQ jobs. */
  readonly jobs: Jobs;
  readonly log: Logger;
  /** Prometheus metrics of `GET /metrics`. */
  readonly metrics: CoordinatorMetrics;
  /** What every component shares (Redis, keys, replies, workers). */
  readonly ctx: CoordinatorContext;
  private server?: FastifyInstance;
  private heartbeat?: NodeJS.Timeout;
  /** The URL the API listens on, once started. */
  url?: string;

  constructor(
    readonly opts: CoordinatorOptions,
    logger: Logger,
  ) {
    this.id = opts.coordinatorId ?? `c-${crypto.randomBytes(4).toString('hex')}`;
    this.keys = makeKeys(opts.prefix);
    this.log = logger.child({ component: 'coordinator', coordinatorId: this.id });
    const connect = (name: string, role: 'command' | 'blocking') =>
      createRedis({
        url: opts.redisUrl,
        clusterNodes: opts.redisClusterNodes,
        tlsCa: opts.redisTlsCa,
        name: this.keys.connectionName('coord', this.id, name),
        role,
      });
    this.cmd = connect('cmd', 'command');
    this.replyReader = connect('replies', 'blocking');
    for (const c of [this.cmd, this.replyReader])
      c.on('error', (e) => this.log.debug({ err: e }, 'redis connection error'));
    const replyTo = this.keys.coordReplies(this.id);
    this.router = new ReplyRouter(this.replyReader, this.cmd, replyTo, this.log.child({ component: 'reply-router' }));
    this.workers = new WorkerDirectory(this.cmd, this.keys, opts.workerTimeoutMs);
    const ctx: CoordinatorContext = {
      cmd: this.cmd,
      keys: this.keys,
      router: this.router,
      workers: this.workers,
      coordinatorId: this.id,
      replyTo,
      log: this.log,
      failpoints: { sendJitterMs: opts.failpointSendJitterMs, exitAfterSend: opts.failpointExitAfterSend },
    };
    this.ctx = ctx;
    if (opts.failpointSendJitterMs > 0)
      this.log.warn(
        { jitterMs: opts.failpointSendJitterMs },
        'DSTORE_FAILPOINT_SEND_JITTER_MS is set: stream writes are delayed on purpose (testing only)',
      );
    this.encryption = new TableEncryption(opts.encryptionKey);
    this.catalogue = new Catalogue(ctx, opts.ackTimeoutMs, this.encryption);
    // Stored-row checks of the id index are reads like any other (this.fetch is set below).
    this.ingest = new Ingest(
      ctx,
      opts,
      new IdIndex(this.cmd, this.keys, (table, ids) => this.storedIds(table, ids)),
      this.encryption,
      (t, q, o) => this.fetch.read(t, q, o),
    );
    const fetchQueue = new FetchQueue();
    this.metrics = new CoordinatorMetrics(this.id, fetchQueue);
    this.fetch = new FetchMerger(
      ctx,
      opts.fetchTimeoutMs,
      { window: opts.fetchWindow, queue: fetchQueue },
      { planned: (n) => this.metrics.fetchWorkers.observe(n) },
    );
    this.mutations = new Mutations(ctx, opts.ackTimeoutMs, this.encryption, (t, q, o) => this.fetch.read(t, q, o));
    this.backups = new Backups(ctx, this.fetch);
    this.changes = new ChangeFeed(this.cmd, this.keys);
    this.queries = new QueryService({
      catalogue: this.catalogue,
      encryption: this.encryption,
      fetch: this.fetch,
      cursors: new CursorCodec(this.cmd, this.keys),
      timeRead: () => this.metrics.fetchDuration.startTimer(),
      opts,
    });
    this.jobs = new Jobs(ctx, {
      redisUrl: opts.redisUrl,
      redisClusterNodes: opts.redisClusterNodes,
      redisTlsCa: opts.redisTlsCa,
      replicas: opts.replicas,
      repairAfterMs: opts.repairAfterMs,
      copyTimeoutMs: opts.ackTimeoutMs,
      sweepMs: opts.sweepMs,
      coordinatorTimeoutMs: opts.coordinatorTimeoutMs,
      scrubMs: opts.scrubMs,
    });
  }

  /** Which of `ids` are stored rows of `table` (for the id index); a read, so it sees every acknowledged write. */
  private async storedIds(table: string, ids: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    // Within the filter's limit of $in values.
    for (let i = 0; i < ids.length; i += 5000) {
      const q = normalizeQuery({ where: { _id: { $in: ids.slice(i, i + 5000) } }, fields: ['_id'] });
      for await (const piece of this.fetch.read(table, q)) {
        if (!('rows' in piece)) continue;
        for (const line of piece.rows.split('\n')) if (line) found.add((JSON.parse(line) as { _id: string })._id);
      }
    }
    return found;
  }

  /** One look at the cluster from Redis: what `GET /status` answers and `/metrics` exports. */
  status(): Promise<ClusterStatus> {
    return readClusterStatus(
      {
        cmd: this.cmd,
        keys: this.keys,
        workers: this.workers,
        coordinatorId: this.id,
        coordinatorTimeoutMs: this.opts.coordinatorTimeoutMs,
        queueCounts: () => this.jobs.counts(),
      },
      this.opts.statusTimeoutMs,
    );
  }

  /** Starts reading replies and serving HTTP. */
  async start(): Promise<void> {
    // A wrong DSTORE_ENCRYPTION_KEY stops the start, before this coordinator serves anything.
    this.encryption.checkCatalogue(await this.catalogue.list());
    await this.router.start();
    const beat = () => this.cmd.touch(this.keys.coordinators, this.id).catch(() => undefined);
    await beat();
    this.heartbeat = setInterval(beat, 1000);
    await this.jobs.start();
    this.server = await buildServer(this, this.log);
    const address = await this.server.listen({ host: this.opts.host, port: this.opts.port });
    this.url = address;
    this.log.info(
      {
        url: address,
        replicas: this.opts.replicas,
        minReplicas: this.opts.minReplicas,
        tokens: this.opts.tokens.length,
        encryption: this.encryption.enabled,
      },
      `coordinator listening on ${address}`,
    );
    if (this.opts.tokens.length === 0) {
      this.log.warn(
        this.opts.insecure
          ? 'no API tokens and DSTORE_INSECURE=1: anyone who reaches this port can read, write and drop tables'
          : 'no API tokens: every local process can read, write and drop tables; set DSTORE_TOKENS (docs/security.md)',
      );
    }
  }

  /** Stops serving (finishing requests in hand), then closes Redis connections. */
  async stop(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.server?.close();
    await this.jobs.stop();
    await this.router.stop();
    await this.cmd.zrem(this.keys.coordinators, this.id).catch(() => undefined);
    await closeAll(this.cmd, this.replyReader);
    this.log.info('coordinator stopped');
  }
}
