import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import type { DstoreRedis } from '../common/redis';
import { unavailable } from './errors';
import type { Assignment, FetchRound, WorkerFailure } from './fetch-round';
import { wholeSetToken, type PlacementCache, type TablePlacement } from './placement';
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
  /**
   * A narrow read (common/indexes.ts isNarrowRead): ask the fewest workers that hold every
   * chunk, not all of them.
   */
  narrow?: boolean;
}

/** Chunks left out of a partial answer, and the workers that hold them. */
export interface Gap {
  chunks: Set<string>;
  workers: Set<string>;
}

/** Starting workers a narrow read's cover is tried from (see ReadPlan.cover). */
const COVER_STARTS = 8;

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
    return this.gap.chunks.size === 0 ? all : all.filter((c) => !this.gap.chunks.has(c));
  }

  /**
   * Assigns each of `chunks` to one live replica that is not known to lack it. A chunk
   * without such a replica is a gap: a 503 naming its workers, or (partial) left out. An
   * ordinary read spreads the chunks ({@link spread}); a narrow read ({@link ReadMode.narrow})
   * asks as few workers as it can ({@link cover}): at R = 2 on 4 workers, 2 of them. Each
   * worker asked costs a FETCH, a fence, its answer's batches and a merge input, which is most
   * of a narrow read's time; and a worker asked for every chunk it holds reads without a chunk
   * condition. Such a worker is asked by token (a `chunkSetToken`, common/messages), not
   * by a list of hundreds of ids.
   */
  assign(chunks: readonly string[]): Assignment[] {
    const noReplica: string[] = [];
    const usable = (w: string, c: string) => this.live.has(w) && !this.lacking.has(`${w}\0${c}`);
    const byWorker = this.mode.narrow ? this.cover(chunks, usable, noReplica) : this.spread(chunks, usable, noReplica);
    if (noReplica.length > 0) this.addGap(noReplica);
    // Copies: a narrow read's lists come from a cache shared by reads.
    return [...byWorker].map(([worker, cs]) => {
      const token = cs.length >= 2 ? wholeSetToken(this.placement, worker, cs.length) : undefined;
      return { worker, chunks: [...cs], ...(token === undefined ? {} : { token }) };
    });
  }

  /**
   * Each chunk to the replica with the fewest chunks of this round, then the lowest expected
   * cost (answer time × FETCHes in flight from this coordinator, {@link Outstanding.cost}),
   * then at random; a worker that failed in this read comes last.
   */
  private spread(
    chunks: readonly string[],
    usable: (w: string, c: string) => boolean,
    noReplica: string[],
  ): Map<string, string[]> {
    const byWorker = new Map<string, string[]>();
    for (const c of chunks) {
      let best: string | undefined;
      let bestKey: number[] | undefined;
      for (const w of this.placement.chunks.get(c) ?? []) {
        if (!usable(w, c)) continue;
        const k = [
          this.failedWorkers.has(w) ? 1 : 0,
          byWorker.get(w)?.length ?? 0,
          this.deps.outstanding.cost(w),
          Math.random(),
        ];
        if (!bestKey || lessThan(k, bestKey)) [best, bestKey] = [w, k];
      }
      if (best === undefined) noReplica.push(c);
      else {
        const list = byWorker.get(best) ?? [];
        list.push(c);
        byWorker.set(best, list);
      }
    }
    return byWorker;
  }

  /**
   * The fewest workers that hold every chunk of `chunks` (a chunk no usable replica holds
   * goes to `noReplica`), from {@link smallestCovers}; of the covers found, the one whose
   * workers have the fewest FETCHes in flight from this coordinator, then one at random:
   * equal covers share the reads (at R = 2 on 4 workers, the two pairs that hold everything).
   * A first round over the whole table takes the covers from a cache kept per placement and
   * live set: computing them is O(workers × chunks).
   */
  private cover(
    chunks: readonly string[],
    usable: (w: string, c: string) => boolean,
    noReplica: string[],
  ): Map<string, string[]> {
    const whole =
      this.lacking.size === 0 && this.failedWorkers.size === 0 && chunks.length === this.placement.chunks.size;
    const liveKey = whole ? [...this.live].sort().join(',') : '';
    let found = whole ? coverCache.get(this.placement)?.get(liveKey) : undefined;
    if (!found) {
      const failed = (w: string) => this.failedWorkers.has(w);
      found = smallestCovers(chunks, (c) => this.placement.chunks.get(c) ?? [], usable, failed);
      if (whole) {
        const byLive = coverCache.get(this.placement) ?? new Map<string, Covers>();
        if (byLive.size >= 16) byLive.clear();
        byLive.set(liveKey, found);
        coverCache.set(this.placement, byLive);
      }
    }
    noReplica.push(...found.noReplica);
    let best: { cover: Map<string, string[]>; key: number[] } | undefined;
    for (const cover of found.covers) {
      let busy = 0;
      for (const w of cover.keys()) busy += this.deps.outstanding.get(w);
      const key = [busy, Math.random()];
      if (!best || lessThan(key, best.key)) best = { cover, key };
    }
    return best?.cover ?? new Map();
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

/** Covers of a set of chunks, all of the smallest size found, and the chunks none can hold. */
interface Covers {
  covers: Map<string, string[]>[];
  noReplica: string[];
}

/** A narrow read's covers, per placement (a new placement is a new object) and live set. */
const coverCache = new WeakMap<TablePlacement, Map<string, Covers>>();

/**
 * Greedy set covers of `chunks` by the workers that hold them (usable replicas only), one
 * from each of up to {@link COVER_STARTS} starting workers; each step takes the worker that
 * holds the most chunks still uncovered. Keeps the distinct covers of the smallest size. A
 * worker `failed` in this read is taken only for chunks no other replica holds.
 */
function smallestCovers(
  chunks: readonly string[],
  replicasOf: (chunk: string) => readonly string[],
  usable: (w: string, c: string) => boolean,
  failed: (w: string) => boolean,
): Covers {
  const holds = new Map<string, Set<string>>();
  const noReplica: string[] = [];
  for (const c of chunks) {
    let any = false;
    for (const w of replicasOf(c)) {
      if (!usable(w, c)) continue;
      any = true;
      const set = holds.get(w) ?? new Set<string>();
      set.add(c);
      holds.set(w, set);
    }
    if (!any) noReplica.push(c);
  }
  const rank = (w: string) => (failed(w) ? 1 : 0);
  let starts = [...holds.keys()].filter((w) => rank(w) === 0);
  if (starts.length === 0) starts = [...holds.keys()];
  starts = starts.sort(() => Math.random() - 0.5).slice(0, COVER_STARTS);
  const seen = new Set<string>();
  let covers: Map<string, string[]>[] = [];
  let bestKey: number[] | undefined;
  for (const start of starts) {
    const left = new Map([...holds].map(([w, set]) => [w, new Set(set)]));
    const cover = new Map<string, string[]>();
    for (let next: string | undefined = start; next !== undefined;) {
      const taken = left.get(next)!;
      left.delete(next);
      cover.set(next, [...taken]);
      next = undefined;
      let nextKey: number[] | undefined;
      for (const [w, set] of left) {
        for (const c of taken) set.delete(c);
        if (set.size === 0) {
          left.delete(w);
          continue;
        }
        const k = [rank(w), -set.size];
        if (!nextKey || lessThan(k, nextKey)) [next, nextKey] = [w, k];
      }
    }
    const ws = [...cover.keys()];
    const id = [...ws].sort().join(',');
    if (seen.has(id)) continue;
    seen.add(id);
    const key = [ws.reduce((n, w) => n + rank(w), 0), cover.size];
    if (!bestKey || lessThan(key, bestKey)) {
      bestKey = key;
      covers = [cover];
    } else if (!lessThan(bestKey, key)) {
      covers.push(cover);
    }
  }
  return { covers, noReplica };
}
