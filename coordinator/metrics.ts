import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ClusterStatus } from './cluster-status';
import type { FetchQueue } from './fetch-round';

/** Latency buckets in seconds: from a cached catalogue hit to a FETCH of millions of rows. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** What a worker counts (its heartbeat `counters`) → the metric that exports it. */
const WORKER_COUNTERS = {
  entries: [
    'dstore_worker_ops_entries_total',
    'Ops stream entries the worker handled (applied, refused or dead-lettered).',
  ],
  chunks: ['dstore_worker_chunks_stored_total', 'Chunks the worker stored (duplicates not counted).'],
  rows: ['dstore_worker_rows_stored_total', 'Rows the worker stored.'],
  deadLettered: ['dstore_worker_dead_lettered_total', 'Ops entries the worker moved to the dead-letter stream.'],
  fetchRequests: [
    'dstore_worker_fetch_requests_total',
    "FETCH requests the worker received, answered with rows or not (a worker holding none of a read's chunks never receives it).",
  ],
  fetches: ['dstore_worker_fetches_total', 'FETCH requests the worker answered with rows.'],
  fetchRows: ['dstore_worker_fetch_rows_total', 'Rows the worker sent in FETCH_RESP messages.'],
} as const;

/**
 * The coordinator's Prometheus metrics (`GET /metrics`). Counters and histograms of this
 * process are updated as requests run; everything read from Redis (workers, streams, dead
 * letters, queues) is set from a {@link ClusterStatus} taken at scrape time, so every
 * coordinator exports the same cluster-wide gauges (aggregate them with `max`, not `sum`).
 * Workers' own counters arrive in their heartbeats and are exported with a `workerId` label.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly fetchDuration: Histogram<'outcome'>;
  /** Workers a read asks in its first round (0: a lookup of ids that are not stored). */
  readonly fetchWorkers: Histogram;
  readonly rowsIngested: Counter;
  readonly bytesIngested: Counter;
  private readonly gauges: Record<string, Gauge<string>> = {};
  private readonly workerCounters: Record<string, Counter<'workerId'>> = {};

  constructor(coordinatorId: string, fetchQueue?: FetchQueue) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ coordinatorId });
    collectDefaultMetrics({ register: this.registry, prefix: 'dstore_coordinator_' });
    this.httpDuration = new Histogram({
      name: 'dstore_http_request_duration_seconds',
      help: 'HTTP requests by route and status, until the last byte of the answer.',
      labelNames: ['method', 'route', 'status'],
      buckets: BUCKETS,
      registers,
    });
    this.fetchDuration = new Histogram({
      name: 'dstore_fetch_duration_seconds',
      help: 'Reads (FETCH rounds and merge) from the request to the last row.',
      labelNames: ['outcome'],
      buckets: BUCKETS,
      registers,
    });
    this.fetchWorkers = new Histogram({
      name: 'dstore_fetch_workers',
      help: 'Workers a read asks in its first round: one replica per chunk it needs, so a point lookup asks one.',
      buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.rowsIngested = new Counter({
      name: 'dstore_rows_ingested_total',
      help: 'Rows stored by POSTs through this coordinator (committed POSTs only).',
      registers,
    });
    this.bytesIngested = new Counter({
      name: 'dstore_bytes_ingested_total',
      help: 'Request body bytes of committed POSTs through this coordinator.',
      registers,
    });
    const gauge = (name: string, help: string, labelNames: string[] = []) =>
      (this.gauges[name] = new Gauge({ name, help, labelNames, registers }));
    gauge('dstore_workers_live', 'Workers with a recent heartbeat in state ready.');
    gauge('dstore_workers_known', 'Workers that ever registered under this prefix and were not removed.');
    gauge('dstore_worker_up', '1 when the worker is live, else 0.', ['workerId']);
    gauge('dstore_worker_heartbeat_age_seconds', 'Time since the worker last heartbeated.', ['workerId']);
    gauge('dstore_worker_rows', 'Rows in the worker shard.', ['workerId']);
    gauge('dstore_worker_chunks', 'Chunks in the worker shard.', ['workerId']);
    gauge('dstore_worker_shard_bytes', 'Size of the worker SQLite shard on disk, WAL included.', ['workerId']);
    gauge(
      'dstore_worker_storage_ok',
      "1 when the worker's shard can store, 0 when it cannot (full disk, read-only, I/O errors): it then takes no chunks and answers no reads.",
      ['workerId'],
    );
    gauge(
      'dstore_worker_indexes',
      "Secondary indexes on the worker's shard, over every table, by state (ready, failed).",
      ['workerId', 'state'],
    );
    gauge('dstore_stream_length', 'Entries in the worker ops stream (XLEN).', ['workerId']);
    gauge('dstore_stream_pending', 'Ops entries delivered to the worker but not acked (XINFO GROUPS pending).', [
      'workerId',
    ]);
    gauge('dstore_stream_lag', 'Ops entries not yet delivered to the worker (XINFO GROUPS lag).', ['workerId']);
    gauge('dstore_coordinators_live', 'Coordinators with a recent heartbeat.');
    gauge('dstore_tables', 'Tables in the catalogue.');
    gauge('dstore_chunks', 'Chunks in the placement records.');
    gauge(
      'dstore_under_replicated_chunks',
      'Chunks with fewer copies than the replication factor, waiting for repair.',
    );
    gauge('dstore_open_posts', 'POSTs sent but not yet committed or aborted.');
    gauge('dstore_dead_letters', 'Entries in the dead-letter stream.');
    gauge(
      'dstore_redis_used_memory_bytes',
      'Memory Redis uses (INFO memory used_memory; the fullest master of a cluster).',
    );
    gauge('dstore_redis_maxmemory_bytes', 'Redis maxmemory (0: no limit); at it every write and read fails.');
    gauge('dstore_queue_jobs', 'BullMQ jobs by queue and state.', ['queue', 'state']);
    gauge(
      'dstore_status_incomplete',
      '1 for each part of the Redis read that timed out or failed during this scrape.',
      ['part'],
    );
    if (fetchQueue) {
      new Gauge({
        name: 'dstore_fetch_queued_bytes',
        help: 'Bytes of read answers received from workers and not yet taken by the HTTP clients.',
        registers,
        collect() {
          this.set(fetchQueue.bytes);
        },
      });
      new Gauge({
        name: 'dstore_fetch_queued_bytes_peak',
        help: 'The most dstore_fetch_queued_bytes has been since the coordinator started.',
        registers,
        collect() {
          this.set(fetchQueue.peak);
        },
      });
    }
    for (const [name, help] of Object.values(WORKER_COUNTERS)) {
      this.workerCounters[name] = new Counter({ name, help, labelNames: ['workerId'], registers });
    }
  }

  /** Records a committed POST. */
  ingested(rows: number, bytes: number): void {
    this.rowsIngested.inc(rows);
    this.bytesIngested.inc(bytes);
  }

  /** Sets every Redis-derived metric from one status read; workers that left disappear. */
  update(s: ClusterStatus): void {
    for (const g of Object.values(this.gauges)) g.reset();
    for (const c of Object.values(this.workerCounters)) c.reset();
    const set = (name: string, v: number | null | undefined, labels: Record<string, string> = {}) => {
      if (v !== null && v !== undefined && Number.isFinite(v)) this.gauges[name].set(labels, v);
    };
    if (!s.incomplete.includes('workers')) {
      set('dstore_workers_live', s.workers.filter((w) => w.live).length);
      set('dstore_workers_known', s.workers.length);
    }
    for (const w of s.workers) {
      const l = { workerId: w.id };
      set('dstore_worker_up', w.live ? 1 : 0, l);
      set('dstore_worker_heartbeat_age_seconds', w.heartbeatAgeMs / 1000, l);
      set('dstore_worker_rows', w.rows, l);
      set('dstore_worker_chunks', w.chunks, l);
      set('dstore_worker_shard_bytes', w.shardBytes, l);
      set('dstore_worker_storage_ok', w.storage === 'ok' ? 1 : 0, l);
      set('dstore_worker_indexes', w.indexes?.ready, { ...l, state: 'ready' });
      set('dstore_worker_indexes', w.indexes?.failed, { ...l, state: 'failed' });
      set('dstore_stream_length', w.stream?.length, l);
      set('dstore_stream_pending', w.stream?.pending, l);
      set('dstore_stream_lag', w.stream?.lag, l);
      if (w.counters) {
        for (const [field, [name]] of Object.entries(WORKER_COUNTERS)) {
          const v = w.counters[field as keyof typeof WORKER_COUNTERS];
          if (typeof v === 'number' && v >= 0) this.workerCounters[name].inc(l, v);
        }
      }
    }
    // A part that timed out is left out rather than exported as a misleading 0.
    const ok = (part: string) => !s.incomplete.includes(part);
    if (ok('coordinators')) set('dstore_coordinators_live', s.coordinators.filter((c) => c.live).length);
    if (ok('counts')) {
      set('dstore_tables', s.tables);
      set('dstore_chunks', s.chunks);
      set('dstore_under_replicated_chunks', s.underReplicated);
      set('dstore_open_posts', s.openPosts);
    }
    if (ok('deadLetters')) set('dstore_dead_letters', s.deadLetters.count);
    if (ok('redisMemory')) {
      set('dstore_redis_used_memory_bytes', s.redisMemory.usedBytes);
      set('dstore_redis_maxmemory_bytes', s.redisMemory.maxBytes);
    }
    for (const [queue, counts] of Object.entries(s.queues)) {
      for (const [state, n] of Object.entries(counts)) set('dstore_queue_jobs', n, { queue, state });
    }
    for (const part of s.incomplete) set('dstore_status_incomplete', 1, { part });
  }

  /** The text exposition format. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
