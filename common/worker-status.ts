import type { IndexStatus } from './indexes';

/**
 * What a worker publishes about itself at every heartbeat (`<prefix>:workers:status`): the
 * one record both processes read, so it lives here and neither imports the other.
 */

/** Whether the shard can store: `ok`, or why not (full disk, read-only file or disk, I/O errors). */
export type StorageState = 'ok' | 'full' | 'read-only' | 'io-error';

/** Lifecycle states a worker reports. */
export type WorkerState = 'starting' | 'ready' | 'stopping' | 'stopped';

/** What a worker publishes about itself at every heartbeat (`<prefix>:workers:status`). */
export interface WorkerStatus {
  id: string;
  state: WorkerState;
  /** Caught up with its ops stream: may answer reads. */
  ready: boolean;
  rows: number;
  chunks: number;
  tables: number;
  /** Shard file size on disk (bytes, with the WAL). */
  shardBytes: number;
  appliedId: string;
  /** The shard's identity (made with its SQLite file): a worker id serving another shard is a new incarnation. */
  shard?: string;
  /** The last ops entry the shard itself applied (the rollback check compares it across restarts). */
  shardApplied?: string;
  /** Whether the shard can store (`ok`), or why not: such a worker takes no chunks and answers no reads. */
  storage?: StorageState;
  /** The storage error while `storage` is not `ok`. */
  storageError?: string;
  /**
   * Running totals since the process started (they restart at 0, like any Prometheus
   * counter): ops entries handled, chunks and rows stored, entries dead-lettered, FETCHes
   * answered with rows and the rows sent. The coordinator exports them on `/metrics`.
   */
  counters?: WorkerCounters;
  /** Per table, its secondary indexes on this shard and where each stands. */
  indexes?: Record<string, Record<string, IndexStatus>>;
  /** Backups whose read snapshot this worker holds (coordinator/backup.ts). */
  backups?: string[];
  pid: number;
  host: string;
  startedAt: number;
}

/** See {@link WorkerStatus.counters}. */
export interface WorkerCounters {
  entries: number;
  chunks: number;
  rows: number;
  deadLettered: number;
  /** FETCH requests received, answered with rows or not. */
  fetchRequests?: number;
  fetches: number;
  fetchRows: number;
}
