import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';
import type { WorkerStatus } from '../worker/membership';

/** A worker as the coordinator sees it. */
export interface WorkerView {
  id: string;
  /** Server time of its last heartbeat (ms). */
  lastSeen: number;
  /** Milliseconds since that heartbeat. */
  age: number;
  /** Heartbeat recent and state `ready`: it takes writes and answers reads. */
  live: boolean;
  status?: WorkerStatus;
}

/**
 * Which workers exist and which are live, from their heartbeats (`<prefix>:workers`,
 * scored with Redis server time, so no machine's clock matters). The live list is
 * cached for a short while: a POST of many chunks asks for it once per chunk.
 */
export class WorkerDirectory {
  private cache?: { at: number; live: string[] };

  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
    private readonly timeoutMs: number,
    private readonly cacheMs = 250,
  ) {}

  /** Every worker that ever heartbeated under this prefix (until removed), with its state. */
  async list(): Promise<WorkerView[]> {
    const [[, entries], [, statuses], [, time]] = (await this.cmd
      .multi()
      .zrange(this.keys.workers, 0, -1, 'WITHSCORES')
      .hgetall(this.keys.workerStatus)
      .time()
      .exec()) as [[null, string[]], [null, Record<string, string>], [null, [string, string]]];
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
    const out: WorkerView[] = [];
    for (let i = 0; i < entries.length; i += 2) {
      const id = entries[i];
      const lastSeen = Number(entries[i + 1]);
      let status: WorkerStatus | undefined;
      try {
        status = statuses[id] ? (JSON.parse(statuses[id]) as WorkerStatus) : undefined;
      } catch {
        status = undefined;
      }
      const age = now - lastSeen;
      out.push({ id, lastSeen, age, live: age <= this.timeoutMs && status?.state === 'ready', status });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Ids of live workers, sorted (the token ring's order). */
  async live(): Promise<string[]> {
    if (this.cache && Date.now() - this.cache.at < this.cacheMs) return this.cache.live;
    const live = (await this.list()).filter((w) => w.live).map((w) => w.id);
    this.cache = { at: Date.now(), live };
    return live;
  }

  /** Ids of every known worker (live or not): ops that must reach all replicas go to these. */
  async known(): Promise<string[]> {
    return (await this.list()).map((w) => w.id);
  }

  /** Forgets the cached live list (after a worker failed to answer). */
  invalidate(): void {
    this.cache = undefined;
  }
}
