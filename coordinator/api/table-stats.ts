import type { TableStats } from '../../common/api';
import type { TableDef } from '../table-def';
import type { ApiDeps } from './deps';
import { readChunkMetas } from '../placement';

/** Tables whose stats are read at once: each costs one count() read on every worker. */
const CONCURRENCY = 4;

/** `tables` with their {@link TableStats}, read a few tables at a time. */
export async function withStats(
  coord: Pick<ApiDeps, 'cmd' | 'keys' | 'log' | 'queries' | 'workers'>,
  tables: TableDef[],
): Promise<(TableDef & { stats: TableStats })[]> {
  const [workers, open] = await Promise.all([coord.workers.list(), coord.cmd.hgetall(coord.keys.openPosts)]);
  const shard = new Map(
    workers
      .filter((w) => w.status && w.status.rows > 0)
      .map((w) => [w.id, { bytes: w.status!.shardBytes, rows: w.status!.rows }]),
  );
  // A POST still open is not read yet (placement.ts): its chunks are not counted either.
  const openPosts = new Set(Object.keys(open));
  const out: (TableDef & { stats: TableStats })[] = new Array(tables.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < tables.length; i = next++) {
      const t = tables[i];
      const [rows, placed] = await Promise.all([countRows(coord, t.name), placedRows(coord, t.name, openPosts)]);
      let bytes = 0;
      for (const [w, n] of placed.rowsOn) {
        const s = shard.get(w);
        if (s) bytes += s.bytes * Math.min(1, n / s.rows);
      }
      out[i] = { ...t, stats: { ...rows, chunks: placed.chunks, bytes: Math.round(bytes) } };
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, tables.length) }, lane));
  return out;
}

/** `count()` over the table, answering what it can (`partial`) rather than failing. */
async function countRows(
  coord: Pick<ApiDeps, 'queries' | 'log'>,
  table: string,
): Promise<Pick<TableStats, 'rows' | 'rowsExact'>> {
  try {
    const { rows, exact } = await coord.queries.count(table);
    return { rows, rowsExact: exact };
  } catch (e) {
    coord.log.warn({ table, err: (e as Error).message }, 'table stats: rows not counted');
    return { rows: null, rowsExact: false };
  }
}

/** Committed chunks of a table and, per worker, the rows its copies held when written. */
async function placedRows(
  coord: Pick<ApiDeps, 'cmd' | 'keys' | 'log' | 'queries' | 'workers'>,
  table: string,
  openPosts: ReadonlySet<string>,
): Promise<{ chunks: number; rowsOn: Map<string, number> }> {
  const ids = await coord.cmd.smembers(coord.keys.tableChunks(table));
  const rowsOn = new Map<string, number>();
  let chunks = 0;
  for (const m of (await readChunkMetas(coord.cmd, coord.keys, ids)).values()) {
    if (openPosts.has(m.post)) continue;
    chunks++;
    for (const w of m.replicas) rowsOn.set(w, (rowsOn.get(w) ?? 0) + m.rows);
  }
  return { chunks, rowsOn };
}
