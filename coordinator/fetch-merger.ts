import type { Keys } from '../common/keys';
import type { Logger } from '../common/logger';
import type { FetchRespMessage } from '../common/messages';
import { aggregateName, type AggregateSpec, type QuerySpec, type SortSpec } from '../common/query';
import type { DstoreRedis } from '../common/redis';
import { compareSql, toSqlValue, type SqlValue } from '../common/sqlite-order';
import { unavailable } from './errors';
import { FetchRound, readFence, type Fence, type FetchFlow } from './fetch-round';
import type { WorkerDirectory } from './membership';
import type { CoordinatorContext } from './context';

/** Options of one read. */
export interface ReadOptions {
  /** Answer with what the live workers hold when some chunk has no live replica (a trailer line says so). */
  partial?: boolean;
  /** Turns a stored row (whole or projected) into the row to answer: decrypts encrypted columns (coordinator/encryption.ts). */
  decryptRow?: (row: Record<string, unknown>) => Record<string, unknown>;
}

/** What {@link FetchMerger.start} read ahead of a read. */
export interface ReadStart {
  known: string[];
  live: string[];
  fence: Fence;
}

/** Chunks nobody live holds, and the workers that hold them. */
interface Gap {
  chunks: Set<string>;
  workers: Set<string>;
}

type SortedLine = [...SqlValue[]];

/**
 * Scatter-gather reads. Publishes a FETCH, merges the FETCH_RESP batches of every live
 * worker and yields output lines (JSON text):
 * - plain reads stream rows through as they arrive; when a worker fails, the chunks it
 *   had not completed are asked again, explicitly, of their next live replica;
 * - sorted reads are a k-way merge of the workers' sorted streams; after a failure the
 *   read restarts without that worker and skips what was already sent (the order is
 *   total: sort keys, then `_id`);
 * - aggregates combine the partials of every worker (sum of sums, count of counts,
 *   min of mins, avg as sum/count), then sort and limit.
 * When some chunk has no live replica the read fails with 503 naming the workers, or,
 * with `partial`, ends with a `{"_partial": true, …}` line.
 */
export class FetchMerger {
  private readonly cmd: DstoreRedis;
  private readonly keys: Keys;
  private readonly workers: WorkerDirectory;
  private readonly log: Logger;

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly timeoutMs: number,
    /** Flow control of every read (see {@link FetchRound}); absent: workers send without waiting. */
    private readonly flow?: FetchFlow,
  ) {
    ({ cmd: this.cmd, keys: this.keys, workers: this.workers } = ctx);
    this.log = ctx.log.child({ component: 'fetch' });
  }

  /**
   * Starts the Redis reads a read needs first (the live set and the first round's fence),
   * so that they share a round trip with the caller's own (the catalogue lookup); pass
   * the result to {@link read}. A point lookup is mostly round trips.
   */
  start(): Promise<ReadStart> {
    const p = (async () => {
      const { known, live } = await this.workers.snapshot();
      return { known, live, fence: await readFence(this.cmd, this.keys, live) };
    })();
    p.catch(() => undefined);
    return p;
  }

  /**
   * Runs a normalised query over a table that exists; yields output text: one line, or
   * (plain reads without a limit) a batch of lines joined by newlines, never ending in one.
   */
  async *read(table: string, q: QuerySpec, opts: ReadOptions = {}, started?: Promise<ReadStart>): AsyncGenerator<string> {
    // One cached listing for both: no Redis round trip per read (a point lookup's cost).
    const s = started ? await started : undefined;
    const { known, live } = s ?? (await this.workers.snapshot());
    if (live.length === 0) throw unavailable('no live workers; start one with `dstore worker` (or `dstore up`)');
    const liveSet = new Set(live);
    const gap = await this.gap(table, live, known.filter((w) => !liveSet.has(w)));
    this.checkGap(gap, opts);
    const mode = q.aggregate ? 'agg' : q.sort ? 'sorted' : 'rows';
    const fence = s?.fence;
    const rounds =
      mode === 'rows' ? this.readRows(table, q, live, gap, opts, fence) : mode === 'sorted' ? this.readSorted(table, q, live, gap, opts, fence) : this.readAggregate(table, q, live, gap, opts, fence);
    yield* rounds;
    if (gap.chunks.size > 0) {
      yield JSON.stringify({ _partial: true, missingWorkers: [...gap.workers].sort(), missingChunks: gap.chunks.size });
    }
  }

  private checkGap(gap: Gap, opts: ReadOptions): void {
    if (gap.chunks.size > 0 && !opts.partial) {
      const ws = [...gap.workers].sort();
      throw unavailable(`${gap.chunks.size} chunk(s) have no live replica; their workers are down: ${ws.join(', ')}. Restart them, or ask for a partial answer (partial=true)`, {
        missingWorkers: ws,
        missingChunks: gap.chunks.size,
      });
    }
  }

  /** Chunks of `table` whose replicas are all outside `live`. */
  private async gap(table: string, live: readonly string[], among?: readonly string[]): Promise<Gap> {
    const liveSet = new Set(live);
    const down = among ?? (await this.workers.known()).filter((w) => !liveSet.has(w));
    const gap: Gap = { chunks: new Set(), workers: new Set() };
    for (const w of down) {
      const held = await this.chunksOf(w, table);
      for (const [chunk, replicas] of held) {
        if (!replicas.some((r) => liveSet.has(r))) {
          gap.chunks.add(chunk);
          replicas.forEach((r) => gap.workers.add(r));
        }
      }
    }
    return gap;
  }

  /** A worker's chunks of a table, with their replica lists. */
  private async chunksOf(worker: string, table: string): Promise<Map<string, string[]>> {
    const ids = await this.cmd.sinter(this.keys.workerChunks(worker), this.keys.tableChunks(table));
    const out = new Map<string, string[]>();
    for (let i = 0; i < ids.length; i += 1000) {
      const part = ids.slice(i, i + 1000);
      const metas = await this.cmd.hmget(this.keys.chunks, ...part);
      part.forEach((id, j) => {
        if (metas[j]) out.set(id, (JSON.parse(metas[j]!) as { replicas: string[] }).replicas);
      });
    }
    return out;
  }

  private round(table: string, live: readonly string[], q: QuerySpec, chunks?: string[]): FetchRound {
    return new FetchRound(this.ctx, table, live, q, this.timeoutMs, chunks, this.flow);
  }

  /** After failures: the new live set, and the extra gap it opens (or a 503). */
  private async afterFailure(table: string, round: FetchRound, live: string[], gap: Gap, opts: ReadOptions): Promise<string[]> {
    this.workers.invalidate();
    // A `stale` worker is fine: the read's generation was too old for it; a new round has a newer one.
    const failed = [...round.failed.keys()].filter((w) => !round.stale.has(w));
    this.log.warn({ req: round.req, failed: Object.fromEntries(round.failed) }, 'FETCH: workers failed; retrying without them');
    const next = live.filter((w) => !round.failed.has(w) || round.stale.has(w));
    const more = await this.gap(table, next, failed);
    for (const c of more.chunks) gap.chunks.add(c);
    for (const w of more.workers) gap.workers.add(w);
    this.checkGap(gap, opts);
    if (next.length === 0) throw unavailable(`every live worker failed to answer (${failed.join(', ')})`, { missingWorkers: failed });
    return next;
  }

  private async *readRows(table: string, q: QuerySpec, live: string[], gap: Gap, opts: ReadOptions, fence?: Fence): AsyncGenerator<string> {
    let emitted = 0;
    let chunks: string[] | undefined;
    // Chunks whose rows were sent, by any worker, in any round of this read.
    const sent = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      const round = this.round(table, live, q, chunks);
      try {
        await round.publish(attempt === 0 ? fence : undefined);
        for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
          if (e.kind !== 'batch') continue;
          const r = e.resp;
          const dec = opts.decryptRow;
          const out = (l: string) => (dec ? JSON.stringify(dec(JSON.parse(l) as Record<string, unknown>)) : l);
          if (q.limit === undefined && r.rows.length > 0) {
            // A whole batch as one piece of text: per-line yields through the generators
            // were a large share of a big read's cost.
            emitted += r.rows.length;
            yield (dec ? r.rows.map(out) : r.rows).join('\n');
          } else {
            for (const line of r.rows) {
              if (q.limit !== undefined && emitted >= q.limit) return;
              emitted++;
              yield out(line);
            }
          }
          // Taken: the reader asked for what comes next.
          round.ack(r);
          for (const c of r.chunks ?? []) sent.add(c);
        }
      } finally {
        round.close();
      }
      if (round.failed.size === 0 || (q.limit !== undefined && emitted >= q.limit)) return;
      if (attempt > 2 * live.length + 2) throw unavailable('the read did not complete after repeated retries');
      // Ask again for every chunk of the table not sent yet, not only those the placement
      // records give the failed workers: a chunk being moved may have been theirs to answer
      // at this read's generation and someone else's by now. Workers still answer only the
      // chunks they are first live replica of, and a chunk with no row sent is asked again
      // harmlessly (it has none to send, or nobody sent it).
      live = await this.afterFailure(table, round, live, gap, opts);
      chunks = (await this.cmd.smembers(this.keys.tableChunks(table))).filter((c) => !sent.has(c) && !gap.chunks.has(c));
      if (chunks.length === 0) return;
    }
  }

  private async *readSorted(table: string, q: QuerySpec, live: string[], gap: Gap, opts: ReadOptions, fence?: Fence): AsyncGenerator<string> {
    const sort = q.sort!;
    const cmp = (a: SortedLine, b: SortedLine) => compareSorted(sort, a, b);
    let cursor: SortedLine | undefined;
    let emitted = 0;
    for (let attempt = 0; ; attempt++) {
      const round = this.round(table, live, q);
      const buffers = new Map<string, SortedLine[]>(live.map((w) => [w, []]));
      // Per worker, its buffered batches and how many of their rows are still in `buffers`:
      // a batch is taken (acked) once its last row has been emitted or skipped.
      const batches = new Map<string, { resp: FetchRespMessage; left: number }[]>(live.map((w) => [w, []]));
      const shifted = (w: string) => {
        const q = batches.get(w)!;
        if (--q[0].left === 0) round.ack(q.shift()!.resp);
      };
      const open = new Set(live);
      let failed = false;
      try {
        await round.publish(attempt === 0 ? fence : undefined);
        for (;;) {
          // Emit while every open worker has a row buffered (or has finished).
          while ([...open].every((w) => buffers.get(w)!.length > 0)) {
            let best: string | undefined;
            for (const [w, buf] of buffers) if (buf.length && (!best || cmp(buf[0], buffers.get(best)![0]) < 0)) best = w;
            if (!best) break;
            const line = buffers.get(best)!.shift()!;
            shifted(best);
            if (cursor && cmp(line, cursor) <= 0) continue;
            cursor = line;
            emitted++;
            const row = line[line.length - 1] as unknown as Record<string, unknown>;
            yield JSON.stringify(opts.decryptRow ? opts.decryptRow(row) : row);
            if (q.limit !== undefined && emitted >= q.limit) return;
          }
          const e = await round.next();
          if (e.kind === 'end') {
            if (!failed && [...buffers.values()].every((b) => b.length === 0)) return;
            if (failed) break;
            open.clear();
            continue;
          }
          if (e.kind === 'failed') {
            failed = true;
            break;
          }
          for (const l of e.resp.rows) buffers.get(e.resp.worker)!.push(JSON.parse(l) as SortedLine);
          if (e.resp.rows.length > 0) batches.get(e.resp.worker)!.push({ resp: e.resp, left: e.resp.rows.length });
          else round.ack(e.resp);
          if (e.resp.done) open.delete(e.resp.worker);
        }
      } finally {
        round.close();
      }
      if (attempt > 2 * live.length + 2) throw unavailable('the read did not complete after repeated retries');
      live = await this.afterFailure(table, round, live, gap, opts);
    }
  }

  private async *readAggregate(table: string, q: QuerySpec, live: string[], gap: Gap, opts: ReadOptions, fence?: Fence): AsyncGenerator<string> {
    const aggs = q.aggregate!;
    const groupBy = q.groupBy ?? [];
    for (let attempt = 0; ; attempt++) {
      const round = this.round(table, live, q);
      const parts: FetchRespMessage[] = [];
      try {
        await round.publish(attempt === 0 ? fence : undefined);
        for (let e = await round.next(); e.kind !== 'end'; e = await round.next()) {
          if (e.kind !== 'batch') continue;
          // Partial aggregates are one line per group: kept whole, taken at once.
          parts.push(e.resp);
          round.ack(e.resp);
        }
      } finally {
        round.close();
      }
      if (round.failed.size === 0) {
        yield* combineAggregates(parts, groupBy, aggs, q.sort, q.limit);
        return;
      }
      if (attempt > 2 * live.length + 2) throw unavailable('the read did not complete after repeated retries');
      live = await this.afterFailure(table, round, live, gap, opts);
    }
  }
}

/** Orders `[key…, _id, row]` lines as the workers' SQLite did. */
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
  parts: readonly FetchRespMessage[],
  groupBy: readonly string[],
  aggs: readonly AggregateSpec[],
  sort: readonly SortSpec[] | undefined,
  limit: number | undefined,
): Generator<string> {
  const groups = new Map<string, { g: unknown[]; acc: Partial[] }>();
  for (const p of parts) {
    for (const line of p.rows) {
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
  if (groups.size === 0 && groupBy.length === 0) groups.set('[]', { g: [], acc: aggs.map((s) => (s.op === 'count' ? 0 : s.op === 'avg' ? [null, 0] : null)) });
  let rows = [...groups.values()].map(({ g, acc }) => {
    const out: Record<string, unknown> = {};
    groupBy.forEach((f, i) => (out[f] = g[i]));
    aggs.forEach((spec, i) => {
      const v = acc[i];
      out[aggregateName(spec)] = spec.op === 'avg' ? ((v as [number | null, number])[1] > 0 ? (v as [number, number])[0] / (v as [number, number])[1] : null) : v;
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
