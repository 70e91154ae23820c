import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import type { DstoreRedis } from '../common/redis';
import { unavailable } from './errors';
import type { Assignment, FetchRound, WorkerFailure } from './fetch-round';
import type { PlacementCache, TablePlacement } from './placement';
import type { UpdatePreview } from '../common/messages';

/** A read that is not an ordinary one. */
export interface ReadMode {
  /** A backup's read: the id of the snapshot every worker answers from. */
  snapshot?: string;
  /** An UPDATE's after-images: what every worker answers instead of the rows as they are. */
  preview?: UpdatePreview;
  /**
   * The placement was given for this read (a backup's cut, the write order under a lock) and
   * is kept as it is: not reloaded when a worker lacks a chunk.
   */
  fixed?: boolean;
}

/** Chunks left out of a partial answer, and the workers that hold them. */
export interface Gap {
  chunks: Set<string>;
  workers: Set<string>;
}

/** Weight of the newest answer time in a worker's moving average. */
const EWMA_ALPHA = 0.3;

/**
 * What this coordinator knows of each worker's load, for replica choice (Elasticsearch's
 * adaptive replica selection is the model): the FETCHes it is answering for this
 * coordinator right now, and a moving average of how long its answers took.
 */
export class Outstanding {
  private readonly n = new Map<string, number>();
  private readonly ewma = new Map<string, number>();

  get(worker: string): number {
    return this.n.get(worker) ?? 0;
  }

  add(workers: readonly string[], d: 1 | -1): void {
    for (const w of workers) {
      const v = this.get(w) + d;
      if (v <= 0) this.n.delete(w);
      else this.n.set(w, v);
    }
  }

  /** Records how long a worker took to answer a FETCH. */
  answered(worker: string, ms: number): void {
    const prev = this.ewma.get(worker);
    this.ewma.set(worker, prev === undefined ? ms : prev + EWMA_ALPHA * (ms - prev));
  }

  /**
   * The expected cost of asking a worker one more thing: its answer time, times the work it
   * already has from us. A worker never heard from gets the best known time, so it is tried.
   */
  cost(worker: string): number {
    const best = this.ewma.size > 0 ? Math.min(...this.ewma.values()) : 1;
    return (this.ewma.get(worker) ?? best) * (1 + this.get(worker));
  }
}

/** What a {@link ReadPlan} needs from its coordinator. */
export interface ReadPlanDeps {
  cmd: DstoreRedis;
  keys: Keys;
  placements: PlacementCache;
  outstanding: Outstanding;
  /** The live workers now, read afresh (after a worker failed to answer). */
  liveNow(): Promise<string[]>;
  log: Logger;
}

/**
 * Where one read sends each chunk, and what it learnt from failures. Every chunk of the
 * table's placement is answered by exactly one live replica per round. After a failure
 * the live set is read again: a worker that stopped heartbeating leaves it, and one that
 * failed but is still live is asked again only for chunks that have no other live replica
 * (a stall, not a death). A worker that lacks a chunk (`missing`) is not asked for that
 * chunk again. A chunk with no replica left fails the read (503) or, with `partial`, is
 * left out and the answer says so.
 */
export class ReadPlan {
  private readonly live: Set<string>;
  /** `worker\0chunk` pairs known not to hold the chunk. */
  private readonly lacking = new Set<string>();
  /** Workers that failed in this read, with why. */
  private readonly failedWorkers = new Map<string, string>();
  readonly gap: Gap = { chunks: new Set(), workers: new Set() };

  constructor(
    private readonly deps: ReadPlanDeps,
    readonly table: string,
    live: readonly string[],
    public placement: TablePlacement,
    private readonly partial: boolean,
    /** The only chunks that can hold a match (the filter pins `_id`s); absent: any chunk. */
    readonly only?: ReadonlySet<string>,
    /** What kind of read this is, when not an ordinary one. */
    readonly mode: ReadMode = {},
  ) {
    this.live = new Set(live);
  }

  /** Every chunk the read must answer (the gap excluded, and only those that can match). */
  chunks(): string[] {
    const all = this.only
      ? [...this.only].filter((c) => this.placement.chunks.has(c))
      : [...this.placement.chunks.keys()];
    return all.filter((c) => !this.gap.chunks.has(c));
  }

  /**
   * Assigns each of `chunks` to one live replica that is not known to lack it, spreading
   * them: the replica with the fewest chunks of this round, then the lowest expected cost
   * (answer time × FETCHes in flight from this coordinator, {@link Outstanding.cost}), then
   * at random. A chunk without such a replica is a gap: a 503 naming its workers, or
   * (partial) left out.
   */
  assign(chunks: readonly string[]): Assignment[] {
    const byWorker = new Map<string, string[]>();
    const noReplica: string[] = [];
    for (const c of chunks) {
      const replicas = this.placement.chunks.get(c) ?? [];
      let best: string | undefined;
      let bestKey: [number, number, number, number] | undefined;
      for (const w of replicas) {
        if (!this.live.has(w) || this.lacking.has(`${w}\0${c}`)) continue;
        // A worker that failed in this read comes last: asked only when no other replica is left.
        const key: [number, number, number, number] = [
          this.failedWorkers.has(w) ? 1 : 0,
          byWorker.get(w)?.length ?? 0,
          this.deps.outstanding.cost(w),
          Math.random(),
        ];
        if (!bestKey || lessThan(key, bestKey)) {
          best = w;
          bestKey = key;
        }
      }
      if (best === undefined) noReplica.push(c);
      else {
        const list = byWorker.get(best) ?? [];
        list.push(c);
        byWorker.set(best, list);
      }
    }
    if (noReplica.length > 0) this.addGap(noReplica);
    return [...byWorker].map(([worker, cs]) => ({ worker, chunks: cs }));
  }

  private addGap(chunks: string[]): void {
    const workers = new Set<string>();
    for (const c of chunks) for (const w of this.placement.chunks.get(c) ?? []) workers.add(w);
    if (!this.partial) {
      const ws = [...workers].sort();
      const why = ws.map(
        (w) => `${w} (${this.failedWorkers.get(w) ?? (this.live.has(w) ? 'does not hold it' : 'down')})`,
      );
      if (this.mode.snapshot !== undefined)
        throw unavailable(
          `${chunks.length} chunk(s) have no copy left as of backup ${this.mode.snapshot}'s cut; their holders: ${why.join(', ')}. A worker that restarted since the cut has no snapshot of it: start the backup again`,
          { missingWorkers: ws, missingChunks: chunks.length },
        );
      throw unavailable(
        `${chunks.length} chunk(s) have no live replica that holds them; their replicas: ${why.join(', ')}. Restart those workers or wait for repair, or ask for a partial answer (partial=true)`,
        { missingWorkers: ws, missingChunks: chunks.length },
      );
    }
    for (const c of chunks) this.gap.chunks.add(c);
    for (const w of workers) this.gap.workers.add(w);
  }

  /**
   * Learns from a round's failures: a failed worker leaves the read's live set; a worker
   * that lacks chunks is not asked for them again, the chunks are recorded for repair (which
   * checks which copies really exist), and the placement is read again: the chunk may have
   * moved. `final`: the read has retried enough, so the workers that failed leave it even
   * if their heartbeats still say live (a worker killed a moment ago): their chunks go to
   * other replicas or become the read's gap (a 503 naming them, or left out of a partial
   * answer). Throws when no live worker is left, unless the read takes a partial answer.
   */
  async learn(round: FetchRound, final = false): Promise<void> {
    if (round.failed.size === 0) return;
    let reload = false;
    let relist = false;
    const lost: string[] = [];
    for (const f of round.failed.values()) {
      if (f.code === 'missing' && f.missing?.length) {
        for (const c of f.missing) this.lacking.add(`${f.worker}\0${c}`);
        lost.push(...f.missing);
        reload = true;
      } else {
        this.failedWorkers.set(f.worker, describe(f));
        relist = true;
      }
    }
    // A worker that failed and is no longer live leaves the read; one that did not fail
    // stays, even if a late heartbeat hides it from the list for a moment; one that has come
    // back since the read began (the list it began with was a moment old) joins it.
    if (relist) {
      const now = new Set(await this.deps.liveNow());
      for (const w of now) this.live.add(w);
      for (const f of round.failed.values())
        if (f.code !== 'missing' && (final || !now.has(f.worker))) this.live.delete(f.worker);
    }
    this.deps.log.warn(
      {
        req: round.req,
        table: this.table,
        failed: Object.fromEntries([...round.failed].map(([w, f]) => [w, f.reason])),
      },
      'FETCH: workers failed; asking other replicas',
    );
    if (lost.length > 0) {
      // Repair verifies every copy of these chunks and brings them back to R.
      const now = Date.now();
      await this.deps.cmd.zadd(this.deps.keys.underReplicated, ...lost.flatMap((c) => [now, c])).catch(() => undefined);
    }
    if (reload && !this.mode.fixed) {
      this.deps.placements.invalidate(this.table);
      this.placement = await this.deps.placements.get(this.table);
    }
    if (this.live.size === 0 && !this.partial)
      throw unavailable(
        `every live worker failed to answer (${[...this.failedWorkers].map(([w, r]) => `${w}: ${r}`).join('; ')})`,
        { missingWorkers: [...this.failedWorkers.keys()] },
      );
  }
}

/** Lexicographic order of replica preference keys. */
function lessThan(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

function describe(f: WorkerFailure): string {
  return f.code === 'timeout' ? 'did not answer' : f.code === 'no-snapshot' ? 'no snapshot of the backup' : f.code;
}
