import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import { assertName } from '../common/names';
import type { DstoreRedis } from '../common/redis';
import type { WorkerStatus } from '../common/worker-status';

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
      throw new Error(
        `DSTORE_WORKER_ID=${configured} but ${dataDir} holds the shard of worker ${kept}; use that id or another data dir`,
      );
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
