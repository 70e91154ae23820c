import { digestVersion, type ChunkDigestLine } from '../../common/messages';
import { SCRUB_REPORTS_KEPT } from '../../common/keys';
import type { CoordinatorContext } from '../context';
import type { ChunkMeta } from '../placement';
import { collectDigests, copyVerified } from './chunk-copy';

/** What one scrub pass found and did. */
export interface ScrubReport {
  at: number;
  ms: number;
  chunks: number;
  /** Replica copies whose digests were compared. */
  copies: number;
  /** Copies whose content no longer matches what their worker wrote (or cannot be read). */
  corrupt: { chunk: string; worker: string; reason: string }[];
  /** Chunks whose healthy copies disagree and no majority decides (left alone, reported). */
  divergent: { chunk: string; digests: Record<string, string> }[];
  rebuilt: { chunk: string; worker: string; from: string }[];
  /** Replicas not live (not asked) or that did not answer in time: their copies were not checked. */
  unchecked: string[];
}

/**
 * Compares every live copy of every committed chunk. Each worker reports, per chunk,
 * the digest it recorded when it last wrote the chunk and the digest of what its file
 * holds now: a copy whose two digests differ (changed outside dstore), that cannot be
 * read, or that disagrees with the majority of healthy copies (a missed write) is rebuilt
 * from a healthy copy. With two healthy copies that disagree there is no majority: the
 * chunk is reported as divergent and left alone.
 */
export async function scrub(ctx: CoordinatorContext, timeoutMs: number): Promise<ScrubReport> {
  const started = Date.now();
  const report: ScrubReport = {
    at: started,
    ms: 0,
    chunks: 0,
    copies: 0,
    corrupt: [],
    divergent: [],
    rebuilt: [],
    unchecked: [],
  };
  const metas = new Map(
    Object.entries(await ctx.cmd.hgetall(ctx.keys.chunks)).map(([k, v]) => [k, JSON.parse(v) as ChunkMeta]),
  );
  const open = new Set(await ctx.cmd.hkeys(ctx.keys.openPosts));
  const live = new Set(await ctx.workers.live());
  const asks = new Map<string, Map<string, string[]>>(); // worker → table → chunks
  const unchecked = new Set<string>();
  for (const [chunk, m] of metas) {
    if (open.has(m.post)) continue;
    report.chunks++;
    for (const w of m.replicas) {
      if (!live.has(w)) {
        unchecked.add(w);
        continue;
      }
      let byTable = asks.get(w);
      if (byTable === undefined) asks.set(w, (byTable = new Map()));
      const list = byTable.get(m.table);
      if (list === undefined) byTable.set(m.table, [chunk]);
      else list.push(chunk);
    }
  }
  const found = new Map<string, Map<string, ChunkDigestLine>>(); // chunk → worker → digest
  for (const [worker, byTable] of asks) {
    for (const [table, chunks] of byTable) {
      const { digests, failed } = await collectDigests(ctx, table, [{ worker, chunks }], timeoutMs);
      for (const [chunk, byWorker] of digests) {
        const m = found.get(chunk) ?? new Map<string, ChunkDigestLine>();
        for (const [w, d] of byWorker) m.set(w, d);
        found.set(chunk, m);
      }
      if (failed.size > 0) unchecked.add(worker);
    }
  }
  report.unchecked = [...unchecked];
  for (const [chunk, byWorker] of found) {
    const meta = metas.get(chunk)!;
    const healthy = new Map<string, string>();
    const bad: string[] = [];
    for (const [w, d] of byWorker) {
      report.copies++;
      if (d.error !== undefined || d.stored === undefined || d.stored !== d.actual) {
        bad.push(w);
        report.corrupt.push({
          chunk,
          worker: w,
          reason: d.error ?? `stored digest ${d.stored} but the file holds ${d.actual}`,
        });
      } else healthy.set(w, d.actual!);
    }
    // Digests of two versions cannot be compared: a worker runs an older dstore (an upgrade
    // under way); the chunk is compared once all its replicas run this one.
    if (new Set([...healthy.values()].map(digestVersion)).size > 1) {
      ctx.log.info({ chunk, digests: Object.fromEntries(healthy) }, 'scrub: digest versions differ; chunk skipped');
      continue;
    }
    const votes = new Map<string, string[]>();
    for (const [w, a] of healthy) votes.set(a, [...(votes.get(a) ?? []), w]);
    const ranked = [...votes.entries()].sort((x, y) => y[1].length - x[1].length);
    if (ranked.length === 0) continue; // no healthy copy here; repair of lost workers may still help
    if (ranked.length > 1 && ranked[0][1].length === ranked[1][1].length) {
      report.divergent.push({ chunk, digests: Object.fromEntries(healthy) });
      continue;
    }
    const [, winners] = ranked[0];
    const losers = [...bad, ...ranked.slice(1).flatMap(([, ws]) => ws)];
    if (losers.length === 0) continue;
    const source = winners[0];
    // Verified like any copy: a write racing the rebuild would otherwise be lost on it.
    await copyVerified(ctx, meta, chunk, source, losers, meta.replicas, timeoutMs, {
      replace: true,
      sourceDigest: ranked[0][0],
    });
    for (const w of losers) report.rebuilt.push({ chunk, worker: w, from: source });
    ctx.log.warn({ chunk, table: meta.table, rebuilt: losers, from: source }, 'scrub rebuilt chunk copies');
  }
  report.ms = Date.now() - started;
  const json = JSON.stringify(report);
  await ctx.cmd
    .multi()
    .set(ctx.keys.scrubReport, json)
    .xadd(ctx.keys.scrubReports, 'MAXLEN', '~', SCRUB_REPORTS_KEPT, '*', 'report', json)
    .exec();
  ctx.log.info(
    {
      chunks: report.chunks,
      copies: report.copies,
      corrupt: report.corrupt.length,
      divergent: report.divergent.length,
      rebuilt: report.rebuilt.length,
      ms: report.ms,
    },
    'scrub done',
  );
  return report;
}
