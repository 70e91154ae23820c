/**
 * The replica check of a quiet cluster: every chunk of the table, as `{<p>}:chunks` places
 * it, must be held (committed) by each worker its placement lists, with the same rows on
 * each, and must have R copies (or as many as there are active workers). Reads cannot see
 * this: they are answered by one replica per chunk, so a copy that was never written (a
 * worker down at ingest and never repaired, a wiped shard) only shows once the other copy
 * is gone. Reads the workers' SQLite files directly (read-only), as test/faults does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import type Redis from 'ioredis';
import type { Keys } from '../../common/keys';
import { canonical } from '../support/data';
import type { Problem } from './checker';

/** What one worker's shard holds of a table: chunk → (`_id` → canonical doc), committed chunks only. */
type Held = Map<string, Map<string, string>>;

function readShard(dataDir: string, table: string): Held | string {
  const file = path.join(dataDir, 'shard.sqlite');
  if (!fs.existsSync(file)) return 'has no shard file';
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const t = db.prepare<[string], { seq: number }>('SELECT seq FROM _tables WHERE name = ?').get(table);
    if (!t) return `has no table ${table}`;
    const held: Held = new Map();
    for (const c of db
      .prepare<[string], { chunk: string }>('SELECT chunk FROM _chunks WHERE tbl = ? AND committed = 1')
      .all(table))
      held.set(c.chunk, new Map());
    for (const r of db
      .prepare<[], { _id: string; chunk: string; doc: string }>(`SELECT _id, chunk, doc FROM t_${t.seq}`)
      .all()) {
      held.get(r.chunk)?.set(r._id, canonical(JSON.parse(r.doc)));
    }
    return held;
  } catch (e) {
    return `shard not readable: ${(e as Error).message}`;
  } finally {
    db?.close();
  }
}

/** Figures of one replica check. */
export interface ReplicaReport {
  chunks: number;
  copies: number;
  /** Listed replicas that do not hold a chunk whose other copies are empty (allowed: an empty chunk is not copied). */
  emptyNotHeld: number;
  problems: Problem[];
}

/**
 * Compares every placed chunk of `table` across the workers that should hold it, and checks
 * that every row of `settled` (the rows a complete read returned, by `_id`) is in some copy.
 * `dirs` maps each running worker to its data dir; `active` is how many workers take chunks.
 */
export async function checkReplicas(
  redis: Redis,
  keys: Keys,
  table: string,
  dirs: ReadonlyMap<string, string>,
  replicas: number,
  active: number,
  settled: readonly string[] = [],
): Promise<ReplicaReport> {
  const placed = Object.entries(await redis.hgetall(keys.chunks))
    .map(([chunk, raw]) => ({
      chunk,
      ...(JSON.parse(raw) as { table: string; replicas: string[]; rows: number; post: string }),
    }))
    .filter((c) => c.table === table);
  const shards = new Map<string, Held | string>();
  const shardOf = (w: string): Held | string => {
    if (!shards.has(w)) {
      const dir = dirs.get(w);
      shards.set(w, dir ? readShard(dir, table) : 'is not running');
    }
    return shards.get(w)!;
  };
  const report: ReplicaReport = { chunks: placed.length, copies: 0, emptyNotHeld: 0, problems: [] };
  const held = new Set<string>();
  const want = Math.min(replicas, active);
  const ids = (xs: string[]) => xs.slice(0, 5).join(',') + (xs.length > 5 ? ',…' : '');
  for (const c of placed) {
    if (c.replicas.length < want) {
      report.problems.push({
        kind: 'replica',
        id: c.chunk,
        detail: `chunk ${c.chunk} (post ${c.post}) is placed on ${c.replicas.length} worker(s) (${c.replicas.join(',')}); R = ${replicas} with ${active} active`,
      });
    }
    const copies = new Map<string, Map<string, string>>();
    const lacking: [string, string][] = [];
    for (const w of c.replicas) {
      const shard = shardOf(w);
      const rows = typeof shard === 'string' ? undefined : shard.get(c.chunk);
      if (rows) copies.set(w, rows);
      else lacking.push([w, typeof shard === 'string' ? shard : 'does not hold it committed']);
    }
    report.copies += copies.size;
    const rowsHeld = Math.max(0, ...[...copies.values()].map((m) => m.size));
    for (const m of copies.values()) for (const id of m.keys()) held.add(id);
    for (const [w, why] of lacking) {
      if (rowsHeld === 0) report.emptyNotHeld++;
      else
        report.problems.push({
          kind: 'replica',
          id: c.chunk,
          detail: `chunk ${c.chunk} (post ${c.post}) is listed on ${w}, which ${why}; its other copies hold ${rowsHeld} rows`,
        });
    }
    const [first, ...rest] = [...copies];
    for (const [w, rows] of rest) {
      const [w0, rows0] = first;
      const missing = [...rows0.keys()].filter((id) => !rows.has(id));
      const extra = [...rows.keys()].filter((id) => !rows0.has(id));
      const differ = [...rows0.keys()].filter((id) => rows.has(id) && rows.get(id) !== rows0.get(id));
      if (missing.length + extra.length + differ.length === 0) continue;
      report.problems.push({
        kind: 'replica',
        id: c.chunk,
        detail:
          `copies of chunk ${c.chunk} differ: ${w0} holds ${rows0.size} rows, ${w} ${rows.size}` +
          (missing.length ? `; only on ${w0}: ${ids(missing)}` : '') +
          (extra.length ? `; only on ${w}: ${ids(extra)}` : '') +
          (differ.length ? `; other values: ${ids(differ)}` : ''),
      });
    }
  }
  const orphans = settled.filter((id) => !held.has(id));
  if (orphans.length > 0)
    report.problems.push({
      kind: 'replica',
      detail: `${orphans.length} row(s) a complete read returned are in no copy of any placed chunk: ${ids(orphans)}`,
    });
  return report;
}
