import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { assertName } from '../common/names';
import type { DstoreRedis } from '../common/redis';
import type { StorageState } from './ops-consumer';

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

/**
 * The worker's id: `DSTORE_WORKER_ID` when set, else the one kept in `<dataDir>/worker-id`,
 * else a new one written there, so a restarted worker keeps its stream and its shard.
 */
export function resolveWorkerId(dataDir: string, configured?: string): string {
  const file = path.join(dataDir, 'worker-id');
  fs.mkdirSync(dataDir, { recursive: true });
  let kept: string | undefined;
  try {
    kept = fs.readFileSync(file, 'utf8').trim();
  } catch {
    kept = undefined;
  }
  if (configured) {
    if (kept && kept !== configured) {
      throw new Error(`DSTORE_WORKER_ID=${configured} but ${dataDir} holds the shard of worker ${kept}; use that id or another data dir`);
    }
    if (!kept) fs.writeFileSync(file, configured + '\n');
    return assertName('worker id', configured);
  }
  if (kept) return assertName('worker id', kept);
  const id = `w-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(file, id + '\n');
  return id;
}

/** Sends heartbeats on a timer until stopped; the last one reports `stopped`. */
export class Heartbeat {
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();

  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
    private readonly everyMs: number,
    private readonly status: () => Omit<WorkerStatus, 'pid' | 'host' | 'startedAt'>,
    private readonly log: Logger,
  ) {}

  /** Sends one heartbeat now and then every `everyMs`. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => {
      this.beat().catch((e) => this.log.warn({ err: e }, 'heartbeat failed'));
    }, this.everyMs);
  }

  /** Sends one heartbeat with the current status. */
  async beat(): Promise<void> {
    const s: WorkerStatus = { ...this.status(), pid: process.pid, host: os.hostname(), startedAt: this.startedAt };
    await this.cmd.heartbeat(this.keys.workers, this.keys.workerStatus, s.id, JSON.stringify(s));
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
