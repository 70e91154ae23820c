import type Database from 'better-sqlite3';
import { ChunkDigest } from './chunk-digest';

/**
 * The shard's schema, as numbered migrations. `PRAGMA user_version` holds the last one
 * applied; opening a shard applies the missing ones in order, each in its own transaction
 * with the version bump. A file from before versioning (version 0 with tables in it) gets
 * them all: each is written to be a no-op where the old code had already done its work.
 */
export interface Migration {
  version: number;
  /** What it changes, for the log. */
  what: string;
  up(db: Database.Database): void;
}

function columns(db: Database.Database, table: string): Set<string> {
  return new Set(
    db
      .prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`)
      .all()
      .map((c) => c.name),
  );
}

/** Every migration, in order; append only. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    what: 'metadata tables: tables, chunks, POSTs, applied ops, state',
    up: (db) =>
      db.exec(`
        CREATE TABLE IF NOT EXISTS _tables (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          name TEXT NOT NULL UNIQUE,
          schema TEXT,
          version INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE IF NOT EXISTS _chunks (
          chunk TEXT PRIMARY KEY,
          tbl TEXT NOT NULL,
          post TEXT NOT NULL,
          replicas TEXT NOT NULL,
          rows INTEGER NOT NULL,
          committed INTEGER NOT NULL DEFAULT 0,
          applied_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS _chunks_tbl ON _chunks (tbl);
        CREATE INDEX IF NOT EXISTS _chunks_post ON _chunks (post);
        CREATE TABLE IF NOT EXISTS _posts (post TEXT PRIMARY KEY, state TEXT NOT NULL, at INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS _ops (
          op TEXT PRIMARY KEY,
          kind TEXT NOT NULL,
          result TEXT NOT NULL,
          applied_at INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS _state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `),
  },
  {
    version: 2,
    what: 'a digest per chunk (scrub, copy checks)',
    up: (db) => {
      if (!columns(db, '_chunks').has('digest')) db.exec('ALTER TABLE _chunks ADD COLUMN digest TEXT');
    },
  },
  {
    version: 3,
    what: 'drop the read generations of chunk moves (reads are routed by the coordinator)',
    up: (db) => {
      const have = columns(db, '_chunks');
      for (const c of ['since', 'prev_replicas', 'prev_since'])
        if (have.has(c)) db.exec(`ALTER TABLE _chunks DROP COLUMN ${c}`);
      db.prepare("DELETE FROM _state WHERE key IN ('min_gen', 'moves_cursor')").run();
    },
  },
  {
    version: 4,
    what: 'chunk digests of version d2 (one hash per chunk, rows sorted by _id)',
    up: (db) => {
      const set = db.prepare('UPDATE _chunks SET digest = ? WHERE chunk = ?');
      const exists = db.prepare<[string], { n: number }>(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
      );
      for (const t of db.prepare<[], { name: string; seq: number }>('SELECT name, seq FROM _tables').all()) {
        if (exists.get(`t_${t.seq}`)!.n === 0) continue;
        const rows = db.prepare<[string], { _id: string; doc: string }>(
          `SELECT _id, doc FROM t_${t.seq} WHERE chunk = ?`,
        );
        const chunks = db.prepare<[string], { chunk: string }>('SELECT chunk FROM _chunks WHERE tbl = ?').all(t.name);
        for (const { chunk } of chunks) {
          const d = new ChunkDigest();
          for (const r of rows.iterate(chunk)) d.add(r._id, r.doc);
          set.run(d.toString(), chunk);
        }
      }
    },
  },
  {
    version: 5,
    what: 'secondary indexes: the declared set per table and each index state',
    up: (db) => {
      if (!columns(db, '_tables').has('index_version'))
        db.exec('ALTER TABLE _tables ADD COLUMN index_version INTEGER NOT NULL DEFAULT 0');
      db.exec(`
        CREATE TABLE IF NOT EXISTS _indexes (
          tbl TEXT NOT NULL,
          name TEXT NOT NULL,
          fields TEXT NOT NULL,
          state TEXT NOT NULL,
          error TEXT,
          PRIMARY KEY (tbl, name)
        );
      `);
    },
  },
];

/** The schema version this code writes. */
export const SHARD_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Brings a shard's schema to {@link SHARD_VERSION}; returns the version it had. Refuses a newer file. */
export function migrate(db: Database.Database, file: string): number {
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > SHARD_VERSION) {
    throw new Error(
      `${file} has shard schema version ${from}, newer than this dstore's ${SHARD_VERSION}: run this worker with the dstore version that wrote it, or a newer one`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return from;
}
