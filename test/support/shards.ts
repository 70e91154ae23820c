import Database from 'better-sqlite3';
import * as path from 'node:path';

/**
 * Every committed chunk of `table` in one worker's shard file, as chunk → its rows
 * (`_id` + stored JSON, sorted). Read straight from SQLite, not through dstore: this is
 * what that replica would answer with, whichever replica a read picks.
 */
export function shardChunks(dataDir: string, table = 't'): Map<string, string> {
  const db = new Database(path.join(dataDir, 'shard.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const t = db.prepare('SELECT seq FROM _tables WHERE name = ?').get(table) as { seq: number } | undefined;
    const out = new Map<string, string>();
    if (!t) return out;
    const rows = db
      .prepare(
        `SELECT r.chunk AS chunk, r._id AS id, r.doc AS doc FROM t_${t.seq} r JOIN _chunks c ON c.chunk = r.chunk WHERE c.committed = 1 ORDER BY r.chunk, r._id`,
      )
      .all() as { chunk: string; id: string; doc: string }[];
    for (const r of rows) out.set(r.chunk, (out.get(r.chunk) ?? '') + `${r.id}=${r.doc}\n`);
    return out;
  } finally {
    db.close();
  }
}
