import type { Keys } from '../common/keys';
import { timeToMs, type DstoreRedis } from '../common/redis';
import type { WorkerStatus } from '../common/worker-status';

/** A worker as the coordinator sees it. */
export interface WorkerView {
  id: string;
  /** Server time of its last heartbeat (ms). */
  lastSeen: number;
  /** Milliseconds since that heartbeat. */
  age: number;
  /** Heartbeat recent, state `ready` and storage `ok`: it takes writes and answers reads. */
  live: boolean;
  /** Being drained: still answers reads for the chunks it holds, takes no new chunks. */
  draining: boolean;
  status?: WorkerStatus;
}

/**
 * Which workers exist and which are live, from their heartbeats (`<prefix>:workers`,
 * scored with Redis server time, so no machine's clock matters). The live list is
 * cached for a short while: a POST of many chunks asks for it once per chunk.
 */
export class WorkerDirectory {
  private cache?: { at: number; known: string[]; live: string[]; writable: string[] };

  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
    private readonly timeoutMs: number,
    private readonly cacheMs = 250,
  ) {}

  /**
   * Every worker that ever heartbeated under this prefix, with its state; retired
   * (drained) workers are left out, even when their process still heartbeats.
   */
  async list(): Promise<WorkerView[]> {
    const [[, entries], [, statuses], [, time], [, draining], [, retired]] = (await this.cmd
      .multi()
      .zrange(this.keys.workers, 0, -1, 'WITHSCORES')
      .hgetall(this.keys.workerStatus)
      .time()
      .hkeys(this.keys.draining)
      .hkeys(this.keys.retired)
      .exec()) as [
      [null, string[]],
      [null, Record<string, string>],
      [null, [string, string]],
      [null, string[]],
      [null, string[]],
    ];
    const drainingSet = new Set(draining);
    const retiredSet = new Set(retired);
    const now = timeToMs(time);
    const out: WorkerView[] = [];
    for (let i = 0; i < entries.length; i += 2) {
      const id = entries[i];
      if (retiredSet.has(id)) continue;
      const lastSeen = Number(entries[i + 1]);
      let status: WorkerStatus | undefined;
      try {
        status = statuses[id] ? (JSON.parse(statuses[id]) as WorkerStatus) : undefined;
      } catch {
        status = undefined;
      }
      const age = now - lastSeen;
      // A worker whose shard cannot store holds its ops stream: it neither takes chunks nor answers reads.
      const live = age <= this.timeoutMs && status?.state === 'ready' && (status.storage ?? 'ok') === 'ok';
      out.push({ id, lastSeen, age, live, draining: drainingSet.has(id), status });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Ids of live workers, sorted: the live set of a read (draining workers included). */
  async live(): Promise<string[]> {
    return (await this.cached()).live;
  }

  /** Ids of live workers that take new chunks (not draining), sorted: the token ring's order. */
  async writable(): Promise<string[]> {
    return (await this.cached()).writable;
  }

  /**
   * Known and live ids from one cached listing, for a read: the workers a read asks and
   * the ones whose chunks it must check for a gap, as of the same moment.
   */
  async snapshot(): Promise<{ known: string[]; live: string[] }> {
    return this.cached();
  }

  private async cached(): Promise<{ known: string[]; live: string[]; writable: string[] }> {
    if (this.cache && Date.now() - this.cache.at < this.cacheMs) return this.cache;
    const all = await this.list();
    const list = all.filter((w) => w.live);
    this.cache = {
      at: Date.now(),
      known: all.map((w) => w.id),
      live: list.map((w) => w.id),
      writable: list.filter((w) => !w.draining).map((w) => w.id),
    };
    return this.cache;
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
