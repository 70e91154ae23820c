import type { WorkerOptions } from '../common/config';
import { makeKeys, type Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { closeAll, createRedis, withTimeout, type DstoreRedis } from '../common/redis';
import { compareStreamIds } from '../common/stream-ids';
import { FetchResponder } from './fetch-responder';
import type { WorkerState, WorkerStatus } from '../common/worker-status';
import { Heartbeat, resolveWorkerId } from './membership';
import { OpsConsumer } from './ops-consumer';
import { ShardStore } from './shard-store';
import { BackupSnapshots } from './backup-snapshots';

/**
 * A dstore worker: keeps its shard of every table in SQLite, applies its ops stream,
 * answers FETCH, heartbeats. Three Redis connections: commands, the blocking ops
 * reader, the fetch subscriber (each blocking role needs a connection of its own).
 */
export class Worker {
  readonly id: string;
  readonly keys: Keys;
  private state: WorkerState = 'starting';
  private readonly store: ShardStore;
  private readonly snapshots: BackupSnapshots;
  private readonly cmd: DstoreRedis;
  private readonly reader: DstoreRedis;
  private readonly sub: DstoreRedis;
  private readonly consumer: OpsConsumer;
  private readonly fetch: FetchResponder;
  private readonly heartbeat: Heartbeat;
  readonly log: Logger;

  constructor(
    readonly opts: WorkerOptions,
    logger: Logger,
  ) {
    this.id = resolveWorkerId(opts.dataDir, opts.workerId);
    this.keys = makeKeys(opts.prefix);
    this.log = logger.child({ component: 'worker', workerId: this.id });
    this.store = new ShardStore(opts.dataDir, {
      sync: opts.sqliteSync,
      mmapBytes: opts.sqliteMmapBytes,
      diskFullFile: opts.failpointDiskFullFile,
      indexBuildDelayMs: opts.failpointIndexBuildMs,
    });
    const connect = (name: string, role: 'command' | 'blocking' | 'subscriber') =>
      createRedis({
        url: opts.redisUrl,
        clusterNodes: opts.redisClusterNodes,
        tlsCa: opts.redisTlsCa,
        name: this.keys.connectionName('worker', this.id, name),
        role,
      });
    this.cmd = connect('cmd', 'command');
    this.reader = connect('ops', 'blocking');
    this.sub = connect('fetch', 'subscriber');
    for (const c of [this.cmd, this.reader, this.sub])
      c.on('error', (e) => this.log.debug({ err: e }, 'redis connection error'));
    this.snapshots = new BackupSnapshots(this.store.file, this.log.child({ component: 'backup' }));
    this.consumer = new OpsConsumer(
      this.reader,
      this.cmd,
      this.store,
      {
        workerId: this.id,
        keys: this.keys,
        batch: opts.opsBatch,
        applyAttempts: opts.applyAttempts,
        snapshots: this.snapshots,
      },
      this.log.child({ component: 'ops-consumer' }),
    );
    this.fetch = new FetchResponder(
      this.sub,
      this.cmd,
      this.store,
      this.consumer,
      {
        workerId: this.id,
        keys: this.keys,
        batchRows: opts.fetchBatchRows,
        batchBytes: opts.fetchBatchBytes,
        snapshots: this.snapshots,
      },
      this.log.child({ component: 'fetch-responder' }),
    );
    this.heartbeat = new Heartbeat(this.cmd, this.keys, opts.heartbeatMs, () => this.status(), this.log);
    this.consumer.on('ready', () => {
      this.state = 'ready';
      this.heartbeat.beat().catch(() => undefined);
    });
    // Coordinators stop placing chunks on it and reading from it at once, not at the next beat.
    this.consumer.on('storage', () => this.heartbeat.beat().catch(() => undefined));
  }

  private status() {
    const s = this.store.stats();
    return {
      id: this.id,
      state: this.state,
      ready: this.state === 'ready',
      rows: s.rows,
      chunks: s.chunks,
      tables: s.tables,
      shardBytes: s.bytes,
      appliedId: this.consumer.appliedId,
      shard: this.store.shardId(),
      shardApplied: this.store.appliedId(),
      storage: this.consumer.storage.state,
      storageError: this.consumer.storage.error,
      counters: { ...this.consumer.counters, ...this.fetch.counters },
      indexes: this.store.indexStates(),
      backups: this.snapshots.ids(),
    };
  }

  /**
   * A shard older than what this worker id had applied (restored from a copy, a snapshot
   * rolled back) may miss writes that left Redis long ago: it gets a new identity, so the
   * cluster treats this worker as a new incarnation and repairs its chunks from other copies.
   */
  private async checkShardAge(): Promise<void> {
    const raw = await this.cmd.hget(this.keys.workerStatus, this.id);
    const prev = raw ? (JSON.parse(raw) as Partial<WorkerStatus>) : undefined;
    const mine = this.store.appliedId();
    if (prev?.shard !== this.store.shardId() || !prev.shardApplied || compareStreamIds(prev.shardApplied, mine) <= 0)
      return;
    const renewed = this.store.renewShardId();
    this.log.error(
      { shard: renewed, was: prev.shard, appliedBefore: prev.shardApplied, appliedNow: mine },
      'this shard is older than what this worker had applied before (restored from a copy?): it starts as a new incarnation; its chunks are repaired from other replicas',
    );
  }

  /** Starts consuming, answering and heartbeating. Resolves once started (not once ready). */
  async start(): Promise<void> {
    this.log.info(
      {
        dataDir: this.opts.dataDir,
        shard: this.store.file,
        shardId: this.store.shardId(),
        created: this.store.created,
        schemaFrom: this.store.migratedFrom,
      },
      'worker starting',
    );
    await this.checkShardAge();
    await this.fetch.start();
    await this.consumer.start();
    await this.heartbeat.start();
  }

  /** Resolves when the ops backlog has been applied. */
  whenReady(): Promise<void> {
    return this.consumer.ready ? Promise.resolve() : new Promise((r) => this.consumer.once('ready', () => r()));
  }

  /** Graceful stop: finish the entry and FETCHes in hand, report `stopped`, close. */
  async stop(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.log.info('worker stopping');
    this.heartbeat.stop();
    // Bounded: with Redis unreachable, unsubscribing and the last heartbeat would wait forever.
    await withTimeout(this.fetch.stop(), 5000);
    await this.consumer.stop();
    this.state = 'stopped';
    await withTimeout(
      this.heartbeat.beat().catch(() => undefined),
      2000,
    );
    await closeAll(this.cmd, this.reader, this.sub);
    this.snapshots.close();
    this.store.close();
    this.log.info('worker stopped');
  }
}
