import { pinnedIds } from '../common/filter';
import { respRows, type FetchRespMessage, type UpdatePreview } from '../common/messages';
import { aggregateName, type AggregateSpec, type QuerySpec, type SortSpec } from '../common/query';
import { compareSql, toSqlValue, type SqlValue } from '../common/sqlite-order';
import { unavailable } from './errors';
import { FetchRound, type Assignment, type FetchFlow } from './fetch-round';
import type { CoordinatorContext } from './context';
import { chunksHoldingIds } from './id-index';
import { PlacementCache, type TablePlacement } from './placement';
import { Outstanding, ReadPlan } from './read-plan';

/** Options of one read. */
export interface ReadOptions {
  /** Answer with what the live workers hold when some chunk has no live replica (a trailer line says so). */
  partial?: boolean;
  /**
   * Turns a stored row (whole or projected) into the row to answer: decrypts encrypted columns
   * (coordinator/encryption.ts).
   */
  decryptRow?: (row: Record<string, unknown>) => Record<string, unknown>;
  /**
   * Answer the plan ({@link ReadExplain}, one line) instead of rows: each planned worker is
   * asked only for its SQLite plan.
   */
  explain?: boolean;
  /**
   * A backup's read (coordinator/backup.ts): every worker answers from the snapshot it kept
   * at the backup's cut, and the chunks are those of the cut's placement.
   */
  snapshot?: { backup: string; placement: TablePlacement };
  /**
   * Rows as this UPDATE would leave them (a plain read of whole rows): the after-images an
   * UPDATE of a table with changes on reads under its write-order lock (coordinator/mutations.ts).
   */
  preview?: UpdatePreview;
  /** The placement to read, kept as given (the table's write order under its lock, commit-send.ts). */
  placement?: TablePlacement;
  /** Ask the fewest workers that hold every chunk (common/indexes.ts isNarrowRead). */
  narrow?: boolean;
}

/** What `"explain": true` answers: which workers a read would ask, for which chunks, and why. */
export interface ReadExplain {
  table: string;
  /** The table's placement version the plan was made from. */
  placementVersion: string;
  /** Chunks of committed POSTs in the table. */
  tableChunks: number;
  /** Set when the filter pins `_id`s: how many, and how many chunks the id index says hold them. */
  pruned?: { by: '_id'; ids: number; chunks: number };
  /**
   * `narrow`: an index bounds what each shard reads, so the read asks the fewest workers that
   * hold every chunk; `spread`: a scan, spread over every live worker.
   */
  workersAsked: 'narrow' | 'spread';
  /**
   * Each worker that would be asked, with the chunks it would answer for and the plan its
   * SQLite makes for the query (`EXPLAIN QUERY PLAN` steps, naming any index it uses);
   * `sqlite` is absent for a worker that did not answer.
   */
  workers: { worker: string; chunks: string[]; sqlite?: string[] }[];
  /** Chunks no live replica holds (the read would fail, or leave them out with `partial`). */
  missingChunks: number;
}

/**
 * What a read yields, in order: rows (the text of `count` rows, one per line, no newline at
 * the end), then, when a `limit` stopped the rows before the end, where the next page starts
 * (`[sortKey…, _id]` of the last row), then the partial trailer when chunks were left out; or
 * only the plan.
 */
export type ReadPiece =
  | { rows: string; count: number }
  | { next: SqlValue[] }
  | { partial: { missingWorkers: string[]; missingChunks: number } }
  | { explain: ReadExplain };

/** What a coordinator observes of its reads (its metrics). */
export interface ReadObserver {
  /** A read's first round asks this many workers. */
  planned(workers: number): void;
}

/** What {@link FetchMerger.start} read ahead of a read. */
export interface ReadStart {
  live: string[];
  /** The table's placement version, read after the read began. */
  version: string;
  /** With a filter that pins `_id`s: how many, and the chunks that may hold them. */
  pinned?: { ids: number; chunks: Set<string> };
}

/** Sort keys then `_id`, as SQLite compared them. */
type SortedLine = [...SqlValue[]];

/** One line of a sorted answer: its keys, and the row's text as the worker sent it. */
interface SortedRow {
  keys: SortedLine;
  row: string;
}

/** Splits a sorted answer's line, `[key…, _id]` + tab + row (worker/fetch-query.ts). */
function sortedRow(line: string): SortedRow {
  const tab = line.indexOf('\t');
  if (tab < 0) {
    // A worker from before the split (during an upgrade): `[key…, _id, row]`.
    const all = JSON.parse(line) as unknown[];
    return { keys: all.slice(0, -1) as SortedLine, row: JSON.stringify(all[all.length - 1]) };
  }
  return { keys: JSON.parse(line.slice(0, tab)) as SortedLine, row: line.slice(tab + 1) };
}

/**
 * One worker's sorted lines not merged yet, in order. A line's keys are parsed only once it
 * is at the head: a merge that a limit stops leaves the lines it did not reach unparsed
 * (about half of them when two workers each sent limit + 1).
 */
export class SortedInput {
  private lines: string[] = [];
  private at = 0;
  private head?: SortedRow;

  get size(): number {
    return this.lines.length - this.at;
  }

  /** Lines held in memory: those not taken yet, and those taken since the last push. */
  get retained(): number {
    return this.lines.length;
  }

  push(lines: readonly string[]): void {
    // Lines already taken are let go here, so the buffer holds only what is not merged yet
    // (a long read's next batch often arrives before the last one is used up).
    if (this.at > 0) {
      this.lines = this.lines.slice(this.at);
      this.at = 0;
    }
    for (const l of lines) this.lines.push(l);
  }

  /** The first line (there must be one). */
  peek(): SortedRow {
    return (this.head ??= sortedRow(this.lines[this.at]));
  }

  take(): SortedRow {
    const row = this.peek();
    this.head = undefined;
    if (++this.at === this.lines.length) {
      this.lines = [];
      this.at = 0;
    }
    return row;
  }
}

/** Every open worker has a line buffered (a finished one need not). */
function allBuffered(open: ReadonlySet<string>, buffers: ReadonlyMap<string, SortedInput>): boolean {
  for (const w of open) if (buffers.get(w)!.size === 0) return false;
  return true;
}

/** Rows of a sorted or aggregated answer handed on as one piece, at most. */
const OUT_BATCH_ROWS = 1000;

/** Output lines as one piece of a read. */
function piece(lines: string[]): { rows: string; count: number } {
  return { rows: lines.join('\n'), count: lines.length };
}

/** Rounds a read may take before it gives up (each retry follows a failure). */
const MAX_ATTEMPTS = 8;

/**
 * Reads. The coordinator decides from the placement records which live replica answers
 * each chunk ({@link ReadPlan}), sends each of those workers one FETCH naming its chunks,
 * merges their FETCH_RESP batches and yields output lines (JSON text). Every chunk is
 * answered exactly once (each worker's answer must account for exactly its chunks), or
 * asked again of another replica, or the read fails (503) or, with `partial`, ends with a
 * `{"_partial": true, …}` line naming what is missing:
 * - plain reads stream rows through as they arrive; after a failure only the chunks not
 *   answered yet are asked again;
 * - sorted reads are a k-way merge of the workers' sorted streams; after a failure the
 *   read restarts without that worker from the last row merged (the order is total: sort
 *   keys, then `_id`): a limit read asks the workers for the rows after it (a keyset, as a
 *   page does), a read without a limit skips up to it;
 * - aggregates combine the partials of every worker (sum of sums, count of counts,
 *   min of mins, avg as sum/count), then sort and limit.
 */
export class FetchMerger {
  readonly placements: PlacementCache;
  private readonly outstanding = new Outstanding();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly timeoutMs: number,
    /** Flow control of every read (see {@link FetchRound}); absent: workers send without waiting. */
    private readonly flow?: FetchFlow,
    private readonly observer?: ReadObserver,
  ) {
    this.placements = new PlacementCache(ctx.cmd, ctx.keys);
  }

  /**
   * Starts the Redis reads a read needs first (the live set and the table's placement
   * version), so that they share a round trip with the caller's own (the catalogue lookup);
   * pass the result to {@link read}. A point lookup is mostly round trips.
   */
  start(table: string, where?: unknown): Promise<ReadStart> {
    const ids = pinned(where);
    const p = Promise.all([
      this.ctx.workers.live(),
      this.placements.version(table),
      ids && chunksHoldingIds(this.ctx.cmd, this.ctx.keys, table, ids),
    ]).then(([live, version, chunks]) => ({
      live,
      version,
      pinned: ids && chunks ? { ids: ids.length, chunks } : undefined,
    }));
    p.catch(() => undefined);
    return p;
  }

  /**
   * Runs a normalised query over a table that exists; yields {@link ReadPiece}s: rows as
   * text (lines joined by line feeds: a whole batch of a plain read, up to OUT_BATCH_ROWS
   * merged rows of a sorted or aggregated one), then the partial
   * trailer when chunks were left out, or only the plan with `explain`.
   */
  async *read(
    table: string,
    q: QuerySpec,
    opts: ReadOptions = {},
    started?: Promise<ReadStart>,
  ): AsyncGenerator<ReadPiece> {
    // A filter that pins `_id`s reads only the chunks the id index names: a lookup of an id
    // that is not stored asks no worker at all. Looked up with the live set, in one round trip.
    const { live, version, pinned: pins } = await (started ?? this.start(table, q.where));
    if (live.length === 0 && !opts.explain)
      throw unavailable('no live workers; start one with `dstore worker` (or `dstore up`)');
    const given = opts.snapshot?.placement ?? opts.placement;
    const placement = given ?? (await this.placements.get(table, version));
    const only = given ? undefined : pins?.chunks;
    const ids = pins && { length: pins.ids };
    const plan = new ReadPlan(
      {
        cmd: this.ctx.cmd,
        keys: this.ctx.keys,
        placements: this.placements,
        outstanding: this.outstanding,
        liveNow: () => {
          this.ctx.workers.invalidate();
          return this.ctx.workers.live();
        },
        log: this.ctx.log,
      },
      table,
      live,
      placement,
      opts.partial || opts.explain === true,
      only,
      { snapshot: opts.snapshot?.backup, preview: opts.preview, fixed: given !== undefined, narrow: opts.narrow },
    );
    if (opts.explain) {
      const explain = this.explain(plan, ids?.length);
      const plans = await this.sqlitePlans(plan, q, explain.workers);
      for (const w of explain.workers) if (plans.has(w.worker)) w.sqlite = plans.get(w.worker);
      yield { explain };
      return;
    }
    if (q.aggregate) {
      let out: string[] = [];
      for await (const line of this.readAggregate(plan, q)) {
        out.push(line);
        if (out.length >= OUT_BATCH_ROWS) {
          yield piece(out);
          out = [];
        }
      }
      if (out.length > 0) yield piece(out);
    } else if (q.sort || q.limit !== undefined) {
      // A limit reads in a total order (sort keys, then `_id`) even without a sort: a page.
      yield* this.readSorted(plan, q, opts);
    } else {
      yield* this.readRows(plan, q, opts);
    }
    if (plan.gap.chunks.size > 0)
      yield { partial: { missingWorkers: [...plan.gap.workers].sort(), missingChunks: plan.gap.chunks.size } };
  }

  private explain(plan: ReadPlan, pinned: number | undefined): ReadExplain {
    const chunks = plan.chunks();
    const workers = plan
      .assign(chunks)
      .map((a) => ({ worker: a.worker, chunks: [...a.chunks].sort() }))
      .sort((a, b) => (a.worker < b.worker ? -1 : 1));
    return {
      table: plan.table,
      placementVersion: plan.placement.version,
      tableChunks: plan.placement.chunks.size,
      ...(pinned === undefined ? {} : { pruned: { by: '_id' as const, ids: pinned, chunks: chunks.length } }),
      workersAsked: plan.mode.narrow ? 'narrow' : 'spread',
      workers,
      missingChunks: plan.gap.chunks.size,
    };
  }

  /** Asks each worker of an explained read for its SQLite plan (one round; who fails is left out). */
  private async sqlitePlans(
    plan: ReadPlan,
    q: QuerySpec,
    workers: readonly { worker: string; chunks: string[] }[],
  ): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (workers.length === 0) return out;
    const round = new FetchRound(
      this.ctx,
      plan.table,
      workers.map((w) => ({ worker: w.worker, chunks: w.chunks })),
      { query: q, explain: true },
      { timeoutMs: this.timeoutMs },
    );
    try {
      await round.publish();
      for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
        if (e.kind !== 'batch') continue;
        for (const line of respRows(e.resp)) out.set(e.resp.worker, (JSON.parse(line) as { sqlite: string[] }).sqlite);
        round.ack(e.resp);
      }
    } finally {
      round.close();
    }
    return out;
  }

  /** A round over `assignments`, counted as outstanding work of its workers until closed. */
  private round(
    plan: ReadPlan,
    assignments: Assignment[],
    q: QuerySpec,
    first: boolean,
  ): { round: FetchRound; close(): void } {
    if (first) this.observer?.planned(assignments.length);
    const round = new FetchRound(
      this.ctx,
      plan.table,
      assignments,
      {
        query: q,
        ...(plan.mode.snapshot === undefined ? {} : { snapshot: plan.mode.snapshot }),
        ...(plan.mode.preview === undefined ? {} : { preview: plan.mode.preview }),
      },
      {
        timeoutMs: this.timeoutMs,
        flow: this.flow,
        isLive: async (w) => (await this.ctx.workers.live()).includes(w),
        onAnswered: (w, ms) => this.outstanding.answered(w, ms),
      },
    );
    const workers = round.workers;
    this.outstanding.add(workers, 1);
    let closed = false;
    return {
      round,
      close: () => {
        round.close();
        if (!closed) this.outstanding.add(workers, -1);
        closed = true;
      },
    };
  }

  private async *readRows(
    plan: ReadPlan,
    q: QuerySpec,
    opts: ReadOptions,
  ): AsyncGenerator<{ rows: string; count: number }> {
    // Chunks answered, by any worker, in any round of this read.
    const answered = new Set<string>();
    const dec = opts.decryptRow;
    const out = (l: string) => (dec ? JSON.stringify(dec(JSON.parse(l) as Record<string, unknown>)) : l);
    for (let attempt = 1; ; attempt++) {
      const todo = plan.chunks().filter((c) => !answered.has(c));
      const assignments = plan.assign(todo);
      if (assignments.length === 0) {
        if (attempt === 1) this.observer?.planned(0);
        return;
      }
      const { round, close } = this.round(plan, assignments, q, attempt === 1);
      try {
        await round.publish();
        for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
          if (e.kind !== 'batch') continue;
          const r = e.resp;
          if (r.count > 0) {
            // A whole batch as one piece of text, as the worker sent it: per-line yields,
            // splits and joins were a large share of a big read's cost.
            yield { rows: dec ? respRows(r).map(out).join('\n') : r.rows, count: r.count };
          }
          // Taken: the reader asked for what comes next.
          round.ack(r);
          for (const c of e.completed) answered.add(c);
        }
      } finally {
        close();
      }
      if (round.failed.size === 0) return;
      await retryAfter(plan, round, attempt);
    }
  }

  /**
   * A k-way merge of the workers' sorted streams. With a `limit` each worker is asked for one
   * row more than the page, so the merge knows whether rows follow the page (then it yields
   * where the next page starts); a page that starts `after` a row is pushed down to every
   * worker as a keyset condition.
   */
  private async *readSorted(plan: ReadPlan, q: QuerySpec, opts: ReadOptions): AsyncGenerator<ReadPiece> {
    const keyCount = q.sort?.length ?? 0;
    const sort = q.sort ?? [];
    const cmp = (a: SortedLine, b: SortedLine) => compareSorted(sort, a, b);
    const ask = q.limit === undefined ? q : { ...q, limit: q.limit + 1 };
    // The last row merged (or the row the page starts after): a retry starts after it.
    let cursor = q.after as SortedLine | undefined;
    let emitted = 0;
    let more = false;
    // Rows merged and not yet handed on: they go as one piece whenever the merge waits for a
    // worker (or holds OUT_BATCH_ROWS), not one piece a row.
    let out: string[] = [];
    const dec = opts.decryptRow;
    rounds: for (let attempt = 1; ; attempt++) {
      const assignments = plan.assign(plan.chunks());
      const workers = assignments.map((a) => a.worker);
      // A retry of a limit read asks only for the rows after the last one merged, and only as
      // many as are still wanted (plus one, to know whether more follow): the workers left do
      // not send again what was already merged, and the merge does not skip through it.
      const again =
        attempt > 1 && q.limit !== undefined && cursor !== undefined && emitted > 0
          ? { ...q, after: cursor, limit: q.limit - emitted + 1 }
          : ask;
      const { round, close } = this.round(plan, assignments, again, attempt === 1);
      const buffers = new Map<string, SortedInput>(workers.map((w) => [w, new SortedInput()]));
      // Per worker, its buffered batches and how many of their rows are still in `buffers`:
      // a batch is taken (acked) once its last row has been emitted or skipped.
      const batches = new Map<string, { resp: FetchRespMessage; left: number }[]>(workers.map((w) => [w, []]));
      const shifted = (w: string) => {
        const b = batches.get(w)!;
        if (--b[0].left === 0) round.ack(b.shift()!.resp);
      };
      const open = new Set(workers);
      let failed = false;
      try {
        await round.publish();
        for (;;) {
          // Emit while every open worker has a row buffered (or has finished).
          while (allBuffered(open, buffers)) {
            let best: string | undefined;
            let bestBuf: SortedInput | undefined;
            for (const [w, buf] of buffers)
              if (buf.size > 0 && (!bestBuf || cmp(buf.peek().keys, bestBuf.peek().keys) < 0)) {
                best = w;
                bestBuf = buf;
              }
            if (!best || !bestBuf) break;
            const line = bestBuf.take();
            shifted(best);
            if (cursor && cmp(line.keys, cursor) <= 0) continue;
            if (q.limit !== undefined && emitted >= q.limit) {
              more = true;
              break rounds;
            }
            cursor = line.keys;
            emitted++;
            out.push(dec ? JSON.stringify(dec(JSON.parse(line.row) as Record<string, unknown>)) : line.row);
            if (out.length >= OUT_BATCH_ROWS) {
              yield piece(out);
              out = [];
            }
          }
          if (out.length > 0) {
            yield piece(out);
            out = [];
          }
          const e = await round.next();
          if (e.kind === 'end') {
            if (!failed && [...buffers.values()].every((b) => b.size === 0)) break rounds;
            if (failed) break;
            open.clear();
            continue;
          }
          if (e.kind === 'failed') {
            failed = true;
            break;
          }
          const lines = respRows(e.resp);
          buffers.get(e.resp.worker)!.push(lines);
          if (lines.length > 0) batches.get(e.resp.worker)!.push({ resp: e.resp, left: lines.length });
          else round.ack(e.resp);
          if (e.resp.done) open.delete(e.resp.worker);
        }
      } finally {
        close();
      }
      await retryAfter(plan, round, attempt);
    }
    if (out.length > 0) yield piece(out);
    if (more && emitted > 0 && cursor) yield { next: cursor.slice(0, keyCount + 1) };
  }

  private async *readAggregate(plan: ReadPlan, q: QuerySpec): AsyncGenerator<string> {
    const aggs = q.aggregate!;
    const groupBy = q.groupBy ?? [];
    for (let attempt = 1; ; attempt++) {
      const assignments = plan.assign(plan.chunks());
      const { round, close } = this.round(plan, assignments, q, attempt === 1);
      const parts: FetchRespMessage[] = [];
      try {
        await round.publish();
        for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
          if (e.kind !== 'batch') continue;
          // Partial aggregates are one line per group: kept whole, taken at once.
          parts.push(e.resp);
          round.ack(e.resp);
        }
      } finally {
        close();
      }
      if (round.failed.size === 0) {
        yield* combineAggregates(parts, groupBy, aggs, q.sort, q.limit);
        return;
      }
      await retryAfter(plan, round, attempt);
    }
  }
}

/**
 * Between the rounds of one read: the first retry goes out at once (another replica is
 * usually there), later ones back off (50 ms doubling to 400 ms), so workers killed a moment
 * ago, still live by their heartbeats, get a moment to come back. After
 * {@link MAX_ATTEMPTS} rounds the workers that keep failing leave the read, and their chunks
 * with no other replica become its gap: a 503 naming them, or a partial answer.
 */
async function retryAfter(plan: ReadPlan, round: FetchRound, attempt: number): Promise<void> {
  if (attempt >= 2) await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** (attempt - 2), 400)));
  await plan.learn(round, attempt >= MAX_ATTEMPTS);
}

/** Orders `[key…, _id, row]` lines as the workers' SQLite did (keys, then `_id`). */
function compareSorted(sort: readonly SortSpec[], a: SortedLine, b: SortedLine): number {
  for (let i = 0; i < sort.length; i++) {
    const c = compareSql(a[i], b[i]);
    if (c !== 0) return sort[i].dir === 'desc' ? -c : c;
  }
  return compareSql(a[sort.length], b[sort.length]);
}

type Partial = SqlValue | [number | null, number];

/** Combines partial aggregates of many workers into output rows. */
export function* combineAggregates(
  parts: readonly Pick<FetchRespMessage, 'rows'>[],
  groupBy: readonly string[],
  aggs: readonly AggregateSpec[],
  sort: readonly SortSpec[] | undefined,
  limit: number | undefined,
): Generator<string> {
  const groups = new Map<string, { g: unknown[]; acc: Partial[] }>();
  for (const p of parts) {
    for (const line of respRows(p)) {
      const { g, a } = JSON.parse(line) as { g: unknown[]; a: Partial[] };
      const key = JSON.stringify(g);
      const cur = groups.get(key);
      if (!cur) {
        groups.set(key, { g, acc: a });
        continue;
      }
      aggs.forEach((spec, i) => (cur.acc[i] = combine(spec, cur.acc[i], a[i])));
    }
  }
  // No rows at all still yields one row for an ungrouped aggregate (count 0).
  if (groups.size === 0 && groupBy.length === 0)
    groups.set('[]', { g: [], acc: aggs.map((s) => (s.op === 'count' ? 0 : s.op === 'avg' ? [null, 0] : null)) });
  let rows = [...groups.values()].map(({ g, acc }) => {
    const out: Record<string, unknown> = {};
    groupBy.forEach((f, i) => (out[f] = g[i]));
    aggs.forEach((spec, i) => {
      const v = acc[i];
      out[aggregateName(spec)] =
        spec.op === 'avg'
          ? (v as [number | null, number])[1] > 0
            ? (v as [number, number])[0] / (v as [number, number])[1]
            : null
          : v;
    });
    return out;
  });
  const keys: SortSpec[] = sort?.length ? [...sort] : groupBy.map((field) => ({ field, dir: 'asc' as const }));
  rows.sort((x, y) => {
    for (const k of keys) {
      const c = compareSql(toSqlValue(x[k.field]), toSqlValue(y[k.field]));
      if (c !== 0) return k.dir === 'desc' ? -c : c;
    }
    return 0;
  });
  if (limit !== undefined) rows = rows.slice(0, limit);
  for (const r of rows) yield JSON.stringify(r);
}

function combine(spec: AggregateSpec, a: Partial, b: Partial): Partial {
  switch (spec.op) {
    case 'count':
      return (a as number) + (b as number);
    case 'sum':
      return a === null ? b : b === null ? a : (a as number) + (b as number);
    case 'avg': {
      const [as, ac] = a as [number | null, number];
      const [bs, bc] = b as [number | null, number];
      return [as === null ? bs : bs === null ? as : as + bs, ac + bc];
    }
    case 'min':
    case 'max': {
      if (a === null) return b;
      if (b === null) return a;
      const c = compareSql(a as SqlValue, b as SqlValue);
      return spec.op === 'min' ? (c <= 0 ? a : b) : c >= 0 ? a : b;
    }
  }
}

/**
 * The `_id`s a filter pins, or undefined (also for a filter that is not valid: the read refuses it later, naming the
 * fault).
 */
function pinned(where: unknown): string[] | undefined {
  try {
    return where === undefined ? undefined : pinnedIds(where);
  } catch {
    return undefined;
  }
}
