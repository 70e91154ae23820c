import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileFilter, jsonPath, parseField } from '../common/filter';
import { mergedRow } from '../common/changes';
import { RejectedError } from '../common/errors';
import { indexedExpr, INDEX_NAME_PATTERN, type IndexStatus, type TableIndexes } from '../common/indexes';
import { ChunkDigest } from './chunk-digest';
import { buildIndex } from './index-builder';
import { migrate } from './shard-migrations';
import {
  DIGEST_NOT_HELD,
  DIGEST_UNCOMMITTED,
  type ChunkDigestLine,
  type DeleteMessage,
  type PostMessage,
  type SetupTableMessage,
  type UpdateMessage,
  type UpdatePreview,
  type UpsertMessage,
} from '../common/messages';

/** What one applied message did, as reported in its ack. */
export interface ApplyResult {
  /** POST: rows held for the chunk; UPDATE/DELETE: rows changed; tables: 0. */
  count: number;
  /** UPDATE/DELETE: chunk id → rows changed in it. */
  counts?: Record<string, number>;
  /** The message had been applied before (a redelivery); nothing changed now. */
  duplicate: boolean;
}

/** A table as the shard knows it. */
export interface LocalTable {
  name: string;
  /** The SQLite table holding its rows: generated (`t_<n>`), never user text. */
  ident: string;
}

/**
 * A read-only connection of its own for one FETCH at a time. SQLite keeps one snapshot
 * per connection while any statement on it is open, so FETCHes sharing a connection
 * would read the snapshot of the oldest scan still running: older than their fence.
 */
export class ShardReader {
  readonly db: Database.Database;
  private readonly table;
  /** Prepared statements by SQL text: a repeated query (a point lookup) is not compiled again. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string, mmapBytes = 0) {
    this.db = new Database(file, { readonly: true });
    this.db.pragma('busy_timeout = 5000');
    // Reads through the map share the OS page cache: a reader taken from the pool is never
    // cold, and a read of thousands of rows is not held to its own 2 MiB page cache.
    if (mmapBytes > 0) this.db.pragma(`mmap_size = ${Math.floor(mmapBytes)}`);
    this.table = this.db.prepare<[string], { name: string; seq: number }>(
      'SELECT name, seq FROM _tables WHERE name = ?',
    );
  }

  /** The table, or undefined when this shard has none. */
  readerTable(name: string): LocalTable | undefined {
    const t = this.table.get(name);
    return t && { name: t.name, ident: `t_${t.seq}` };
  }

  /** The chunks of a table this connection sees committed (a backup's snapshot: as of its cut). */
  committedChunks(table: string): ReadonlySet<string> {
    const rows = this.statement('SELECT chunk FROM _chunks WHERE tbl = ? AND committed = 1').all(table) as {
      chunk: string;
    }[];
    return new Set(rows.map((r) => r.chunk));
  }

  /** A prepared statement for `sql`, kept for the next FETCH on this reader (at most {@link STATEMENT_CACHE}). */
  statement(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      if (this.statements.size >= STATEMENT_CACHE) this.statements.clear();
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * The SQL expression of the row an UPDATE leaves (`set`, then `fill`, then `unset` applied to
 * `doc`), with its parameters: what the UPDATE writes, and what a FETCH with `preview` answers,
 * so an UPDATE's change events show exactly the rows it writes. Throws RejectedError for an
 * UPDATE that changes nothing or touches `_id`.
 */
export function updatedDoc(u: UpdatePreview): { sql: string; params: unknown[] } {
  const set = Object.entries(u.set);
  const fill = Object.entries(u.fill ?? {});
  const unset = u.unset ?? [];
  if (set.length + fill.length + unset.length === 0)
    throw new RejectedError('UPDATE needs at least one field in "set"');
  const pathOf = (field: string) => {
    if (parseField(field)[0] === '_id') throw new RejectedError('"_id" cannot be updated');
    return jsonPath(field);
  };
  // json_set writes every field; json_insert only fields the row lacks; json_remove drops.
  let sql = 'doc';
  const params: unknown[] = [];
  for (const [fn, entries] of [
    ['json_set', set],
    ['json_insert', fill],
  ] as const) {
    if (entries.length === 0) continue;
    sql = `${fn}(${sql}, ${entries.map(() => '?, json(?)').join(', ')})`;
    for (const [field, value] of entries) params.push(pathOf(field), JSON.stringify(value ?? null));
  }
  if (unset.length > 0) {
    sql = `json_remove(${sql}, ${unset.map(() => '?').join(', ')})`;
    params.push(...unset.map(pathOf));
  }
  return { sql, params };
}

/** Statements one reader keeps prepared. */
const STATEMENT_CACHE = 64;

/** Counts reported in heartbeats. */
export interface ShardStats {
  tables: number;
  chunks: number;
  rows: number;
  bytes: number;
}

/** Options of a {@link ShardStore}. */
export interface ShardStoreOptions {
  /** SQLite `synchronous`. @defaultValue `full` */
  sync?: 'full' | 'normal';
  /** SQLite `mmap_size` of the read connections (DSTORE_SQLITE_MMAP_BYTES). @defaultValue 0 (off) */
  mmapBytes?: number;
  /** Testing only: while this file exists the shard cannot grow, as on a full disk. */
  diskFullFile?: string;
  /** Testing only: how long each index build holds the write lock before it runs. */
  indexBuildDelayMs?: number;
}

/**
 * One worker's shard: a single SQLite file in WAL mode, the descendant of the
 * original `SQLStorage`. Every statement is parameterised; the only identifiers
 * spliced into SQL are table idents the shard generates itself. Each applied message
 * is one transaction that also records the stream entry id, so the shard knows how
 * far it has applied its ops stream.
 *
 * Writes go through `db`; reads for FETCH go through `reader`, a second connection,
 * so a long scan never blocks applying writes (WAL gives it a stable snapshot).
 */
export class ShardStore {
  readonly file: string;
  /** The `synchronous` setting of every connection that writes (index builds included). */
  private readonly syncMode: 'FULL' | 'NORMAL';
  /** Some index may be `building` (set by a declaration, and at open for builds a crash cut short). */
  private buildsDue = true;
  private readonly db: Database.Database;
  readonly reader: Database.Database;
  private readonly stmt;
  private readonly idleReaders: ShardReader[] = [];
  /**
   * Committed chunks per table and `_state` values, read once and kept until the next
   * write: a FETCH checks the chunks it asks for, and a point lookup would otherwise
   * spend most of its time there. Every write goes through {@link write}, which clears
   * both (the process is the file's only writer).
   */
  private readonly heldCache = new Map<string, ReadonlySet<string>>();
  /** Per table, the JSON paths of its built indexes (see indexedPaths); cleared after every write. */
  private readonly indexCache = new Map<string, ReadonlySet<string>>();
  private readonly stateCache = new Map<string, string | undefined>();
  /** Inside a write transaction the caches are bypassed: it may read what it just wrote. */
  private writing = false;
  /** The shard file did not exist before this process opened it. */
  readonly created: boolean;
  /** The schema version the file had when opened (see shard-migrations.ts). */
  readonly migratedFrom: number;
  private readonly diskFullFile?: string;
  private readonly indexBuildDelayMs: number;
  private readonly mmapBytes: number;
  private readonly maxPages: number;
  private diskFull = false;

  constructor(dataDir: string, opts: ShardStoreOptions = {}) {
    fs.mkdirSync(dataDir, { recursive: true });
    this.file = path.join(dataDir, 'shard.sqlite');
    this.created = !fs.existsSync(this.file);
    this.diskFullFile = opts.diskFullFile;
    this.indexBuildDelayMs = opts.indexBuildDelayMs ?? 0;
    this.mmapBytes = opts.mmapBytes ?? 0;
    this.db = new Database(this.file);
    this.db.pragma('journal_mode = WAL');
    this.syncMode = (opts.sync ?? 'full') === 'full' ? 'FULL' : 'NORMAL';
    this.db.pragma(`synchronous = ${this.syncMode}`);
    this.maxPages = this.db.pragma('max_page_count', { simple: true }) as number;
    this.db.pragma('busy_timeout = 5000');
    try {
      this.migratedFrom = migrate(this.db, this.file);
    } catch (e) {
      this.db.close();
      throw e;
    }
    // The shard's identity, made with the file: a worker id serving another file is a new incarnation.
    if (!this.db.prepare("SELECT 1 FROM _state WHERE key = 'shard_id'").get()) this.newShardId();
    this.reader = new Database(this.file, { readonly: true });
    this.reader.pragma('busy_timeout = 5000');
    if (this.mmapBytes > 0) this.reader.pragma(`mmap_size = ${Math.floor(this.mmapBytes)}`);
    this.stmt = {
      table: this.db.prepare<[string], { name: string; seq: number }>('SELECT name, seq FROM _tables WHERE name = ?'),
      readerTable: this.reader.prepare<[string], { name: string; seq: number }>(
        'SELECT name, seq FROM _tables WHERE name = ?',
      ),
      insertTable: this.db.prepare('INSERT INTO _tables (name, schema, version) VALUES (?, ?, ?)'),
      updateTable: this.db.prepare('UPDATE _tables SET schema = ?, version = ? WHERE name = ? AND version <= ?'),
      deleteTable: this.db.prepare('DELETE FROM _tables WHERE name = ?'),
      chunk: this.db.prepare<[string], { rows: number }>('SELECT rows FROM _chunks WHERE chunk = ?'),
      insertChunk: this.db.prepare(
        'INSERT INTO _chunks (chunk, tbl, post, replicas, rows, committed, digest, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      setDigest: this.db.prepare('UPDATE _chunks SET digest = ?, rows = ? WHERE chunk = ?'),
      chunkInfo: this.reader.prepare<[string], { tbl: string; digest: string | null; committed: number }>(
        'SELECT tbl, digest, committed FROM _chunks WHERE chunk = ?',
      ),
      postState: this.db.prepare<[string], { state: string }>('SELECT state FROM _posts WHERE post = ?'),
      setPost: this.db.prepare(
        'INSERT INTO _posts (post, state, at) VALUES (?, ?, ?) ON CONFLICT (post) DO UPDATE SET state = excluded.state',
      ),
      commitChunks: this.db.prepare('UPDATE _chunks SET committed = 1 WHERE post = ?'),
      chunksOfPost: this.db.prepare<[string], { chunk: string; tbl: string }>(
        'SELECT chunk, tbl FROM _chunks WHERE post = ?',
      ),
      deleteChunk: this.db.prepare('DELETE FROM _chunks WHERE chunk = ?'),
      chunkTable: this.db.prepare<[string], { tbl: string }>('SELECT tbl FROM _chunks WHERE chunk = ?'),
      setReplicas: this.db.prepare('UPDATE _chunks SET replicas = ? WHERE chunk = ?'),
      deleteChunks: this.db.prepare('DELETE FROM _chunks WHERE tbl = ?'),
      op: this.db.prepare<[string], { result: string }>('SELECT result FROM _ops WHERE op = ?'),
      insertOp: this.db.prepare('INSERT INTO _ops (op, kind, result, applied_at) VALUES (?, ?, ?, ?)'),
      getState: this.db.prepare<[string], { value: string }>('SELECT value FROM _state WHERE key = ?'),
      setState: this.db.prepare(
        'INSERT INTO _state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      stats: this.db.prepare<[], { tables: number; chunks: number; rows: number }>(
        'SELECT (SELECT count(*) FROM _tables) AS tables, count(*) AS chunks, coalesce(sum(rows), 0) AS rows FROM _chunks',
      ),
      // Secondary indexes: run per chunk that carries a set, per heartbeat, per read after a write.
      indexVersion: this.db.prepare<[string], { v: number }>('SELECT index_version AS v FROM _tables WHERE name = ?'),
      indexes: this.db.prepare<[], { tbl: string; name: string; fields: string; state: string; error: string | null }>(
        'SELECT tbl, name, fields, state, error FROM _indexes',
      ),
      readyIndexFields: this.reader.prepare<[string], { fields: string }>(
        "SELECT fields FROM _indexes WHERE tbl = ? AND state = 'ready'",
      ),
      chunksOf: this.db.prepare<[string], { chunk: string }>(
        'SELECT chunk FROM _chunks WHERE tbl = ? AND committed = 1',
      ),
    };
  }

  /** The id of the last ops-stream entry applied in a transaction (`0-0` when none). */
  appliedId(): string {
    return this.state('applied_id') ?? '0-0';
  }

  /** Counts for heartbeats and status. */
  stats(): ShardStats {
    const s = this.stmt.stats.get()!;
    let bytes = 0;
    for (const f of [this.file, `${this.file}-wal`]) {
      try {
        bytes += fs.statSync(f).size;
      } catch {
        // the WAL file may not exist yet
      }
    }
    return { ...s, bytes };
  }

  /** The table as seen by the reader connection, or undefined when this shard has none. */
  readerTable(name: string): LocalTable | undefined {
    const t = this.stmt.readerTable.get(name);
    return t && { name: t.name, ident: `t_${t.seq}` };
  }

  /**
   * This shard's committed chunks of a table: as of now, the same state a reader statement
   * started now sees. Cached until the next write.
   */
  committedChunks(table: string): ReadonlySet<string> {
    let held = this.writing ? undefined : this.heldCache.get(table);
    if (!held) {
      held = new Set(this.stmt.chunksOf.all(table).map((r) => r.chunk));
      if (!this.writing) this.heldCache.set(table, held);
    }
    return held;
  }

  /** The shard's identity (random, made with the file), reported in heartbeats. */
  shardId(): string {
    return this.state('shard_id')!;
  }

  /**
   * Gives the shard a new identity: for a shard found older than what its worker id had
   * applied (restored from a copy), whose chunks may miss writes. The cluster then treats
   * the worker as a new incarnation: its recorded chunks are lost and repaired from other
   * replicas; what the file holds is never read again unless a verified copy replaces it.
   */
  renewShardId(): string {
    return this.write(() => this.newShardId());
  }

  private newShardId(): string {
    const id = `s-${crypto.randomBytes(8).toString('hex')}`;
    this.db
      .prepare(
        "INSERT INTO _state (key, value) VALUES ('shard_id', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      )
      .run(id);
    this.stateCache.clear();
    return id;
  }

  /** A `_state` value, cached until the next write. */
  private state(key: string): string | undefined {
    if (this.writing) return this.stmt.getState.get(key)?.value;
    if (!this.stateCache.has(key)) this.stateCache.set(key, this.stmt.getState.get(key)?.value);
    return this.stateCache.get(key);
  }

  /**
   * Testing only (`diskFullFile`): while the file exists the shard may not grow, so a write
   * that needs a new page fails with SQLITE_FULL, as on a full disk.
   */
  private checkDiskFailpoint(): void {
    if (!this.diskFullFile) return;
    const full = fs.existsSync(this.diskFullFile);
    if (full === this.diskFull) return;
    this.diskFull = full;
    // SQLite keeps max_page_count at least at the current size: "no room to grow".
    this.db.pragma(`max_page_count = ${full ? 1 : this.maxPages}`);
  }

  /** Runs a write transaction; the caches are cleared whether it commits or rolls back. */
  private write<T>(fn: () => T): T {
    this.checkDiskFailpoint();
    const outer = !this.writing;
    this.writing = true;
    try {
      return this.db.transaction(fn)();
    } finally {
      if (outer) this.writing = false;
      this.heldCache.clear();
      this.stateCache.clear();
      this.indexCache.clear();
    }
  }

  /**
   * A reader no other FETCH is using (opened on first need, kept for reuse); give it back with {@link releaseReader}.
   */
  acquireReader(): ShardReader {
    return this.idleReaders.pop() ?? new ShardReader(this.file, this.mmapBytes);
  }

  releaseReader(r: ShardReader): void {
    this.idleReaders.push(r);
  }

  /** Runs `fn` in one write transaction that also records `entryId` as applied. */
  private tx<T>(entryId: string, fn: () => T): T {
    return this.write(() => {
      const out = fn();
      this.stmt.setState.run('applied_id', entryId);
      return out;
    });
  }

  /** Creates the table if this shard lacks it (POSTs may arrive before or without SETUP_TABLE). */
  private ensureTable(name: string, schema?: unknown, version = 1): LocalTable {
    let t = this.stmt.table.get(name);
    if (!t) {
      this.stmt.insertTable.run(name, schema === undefined ? null : JSON.stringify(schema), version);
      t = this.stmt.table.get(name)!;
      const ident = `t_${t.seq}`;
      this.db.exec(
        `CREATE TABLE IF NOT EXISTS ${ident} (_id TEXT PRIMARY KEY, chunk TEXT NOT NULL, doc TEXT NOT NULL)`,
      );
      this.db.exec(`CREATE INDEX IF NOT EXISTS ${ident}_chunk ON ${ident} (chunk)`);
    } else if (schema !== undefined) {
      this.stmt.updateTable.run(JSON.stringify(schema), version, name, version);
    }
    return { name, ident: `t_${t.seq}` };
  }

  private existingTable(name: string): LocalTable | undefined {
    const t = this.stmt.table.get(name);
    return t && { name: t.name, ident: `t_${t.seq}` };
  }

  /** Runs an op once: a repeated op id returns the stored result marked duplicate. */
  private once(op: string, kind: string, entryId: string, fn: () => Omit<ApplyResult, 'duplicate'>): ApplyResult {
    const prior = this.stmt.op.get(op);
    if (prior) return { ...(JSON.parse(prior.result) as ApplyResult), duplicate: true };
    return this.tx(entryId, () => {
      const result = fn();
      this.stmt.insertOp.run(op, kind, JSON.stringify(result), Date.now());
      return { ...result, duplicate: false };
    });
  }

  /** SETUP_TABLE: create or re-declare a table, and bring its indexes to the declared set. */
  setupTable(msg: SetupTableMessage, entryId: string): ApplyResult {
    return this.once(msg.op, msg.type, entryId, () => {
      const t = this.ensureTable(msg.table, msg.schema ?? null, msg.version);
      if (msg.indexes) this.applyIndexes(t, msg.indexes);
      return { count: 0 };
    });
  }

  /**
   * Brings a table's secondary indexes to `decl` unless this shard already has that
   * version of the set or a newer one (a POST may carry an older set than a SETUP_TABLE
   * applied before it). Indexes left out are dropped at once; new ones are recorded
   * `building`, in the caller's transaction, and built afterwards by {@link buildPending}
   * off the event loop. Reads use an index only once it is `ready`.
   */
  private applyIndexes(t: LocalTable, decl: TableIndexes): void {
    if ((this.stmt.indexVersion.get(t.name)?.v ?? 0) >= decl.version) return;
    const current = this.db
      .prepare<[string], { name: string; fields: string }>('SELECT name, fields FROM _indexes WHERE tbl = ?')
      .all(t.name);
    const sqlName = (name: string) => `${t.ident}_ix_${name}`;
    for (const c of current) {
      const want = decl.indexes[c.name];
      if (want && JSON.stringify(want.fields) === c.fields) continue;
      this.db.exec(`DROP INDEX IF EXISTS ${sqlName(c.name)}`);
      this.db.prepare('DELETE FROM _indexes WHERE tbl = ? AND name = ?').run(t.name, c.name);
    }
    const kept = new Set(
      current.filter((c) => JSON.stringify(decl.indexes[c.name]?.fields) === c.fields).map((c) => c.name),
    );
    const record = this.db.prepare(
      'INSERT INTO _indexes (tbl, name, fields, state, error) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tbl, name) DO UPDATE SET fields = excluded.fields, state = excluded.state, error = excluded.error',
    );
    for (const [name, spec] of Object.entries(decl.indexes)) {
      if (kept.has(name)) continue;
      if (!INDEX_NAME_PATTERN.test(name)) continue; // never from a coordinator; not put in SQL
      record.run(t.name, name, JSON.stringify(spec.fields), 'building', null);
      this.buildsDue = true;
    }
    this.db.prepare('UPDATE _tables SET index_version = ? WHERE name = ?').run(decl.version, t.name);
  }

  /** Whether some index is recorded `building` (a build to run, or one a crash interrupted). */
  hasPendingBuilds(): boolean {
    if (!this.buildsDue) return false;
    this.buildsDue = this.db.prepare("SELECT 1 FROM _indexes WHERE state = 'building' LIMIT 1").get() !== undefined;
    return this.buildsDue;
  }

  /**
   * Builds every index recorded `building`, one at a time, each in a worker thread on its own
   * connection ({@link buildIndex}): the event loop stays free, so reads go on; the caller
   * applies no write meanwhile (the build holds SQLite's write lock). Each ends `ready`, or
   * `failed` with SQLite's reason (a field it cannot index); the others are still built.
   */
  async buildPending(): Promise<void> {
    const todo = this.db
      .prepare<[], { tbl: string; name: string; fields: string }>(
        "SELECT tbl, name, fields FROM _indexes WHERE state = 'building'",
      )
      .all();
    for (const ix of todo) {
      const t = this.existingTable(ix.tbl);
      if (!t) continue;
      let error: string | undefined;
      try {
        const exprs = (JSON.parse(ix.fields) as string[]).map(indexedExpr).join(', ');
        error = await buildIndex(
          this.file,
          `CREATE INDEX IF NOT EXISTS ${t.ident}_ix_${ix.name} ON ${t.ident} (${exprs})`,
          this.syncMode,
          this.indexBuildDelayMs,
        );
      } catch (e) {
        error = (e as Error).message.slice(0, 500);
      }
      // Only if the declaration did not change meanwhile (it cannot while the caller waits; a
      // crash between the build and this line leaves it `building`: built again, a no-op).
      this.write(() =>
        this.db
          .prepare(
            "UPDATE _indexes SET state = ?, error = ? WHERE tbl = ? AND name = ? AND fields = ? AND state = 'building'",
          )
          .run(error === undefined ? 'ready' : 'failed', error ?? null, ix.tbl, ix.name, ix.fields),
      );
    }
  }

  /**
   * The JSON paths of the fields of a table's built indexes, for the filter compiler
   * (which writes comparisons on them so SQLite can use the index). Read with the reader
   * connection: a read uses an index only once the write that built it has committed.
   */
  indexedPaths(table: string): ReadonlySet<string> {
    let paths = this.indexCache.get(table);
    if (!paths) {
      paths = new Set(
        this.stmt.readyIndexFields
          .all(table)
          .flatMap((r) => (JSON.parse(r.fields) as string[]).map((f) => jsonPath(f))),
      );
      this.indexCache.set(table, paths);
    }
    return paths;
  }

  /** Every table's indexes and their state on this shard, for the heartbeat. */
  indexStates(): Record<string, Record<string, IndexStatus>> {
    const out: Record<string, Record<string, IndexStatus>> = {};
    for (const r of this.stmt.indexes.all()) {
      (out[r.tbl] ??= {})[r.name] = {
        state: r.state as IndexStatus['state'],
        fields: JSON.parse(r.fields) as string[],
        ...(r.error ? { error: r.error } : {}),
      };
    }
    return out;
  }

  /** DROP_TABLE: remove a table, its rows and its chunks. */
  dropTable(op: string, table: string, entryId: string): ApplyResult {
    return this.once(op, 'DROP_TABLE', entryId, () => {
      const t = this.existingTable(table);
      if (!t) return { count: 0 };
      const { n } = this.db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM ${t.ident}`).get()!;
      this.db.exec(`DROP TABLE IF EXISTS ${t.ident}`);
      this.stmt.deleteChunks.run(table);
      this.stmt.deleteTable.run(table);
      this.db.prepare('DELETE FROM _indexes WHERE tbl = ?').run(table);
      return { count: n };
    });
  }

  /**
   * POST: stores one chunk. Idempotent by chunk id: a redelivered chunk changes
   * nothing and reports the rows already held. A row whose `_id` this shard already
   * holds (from another chunk) rejects the whole chunk.
   */
  insertChunk(msg: PostMessage, entryId: string): ApplyResult {
    if (msg.ids.length !== msg.rows.length) {
      throw new RejectedError(`chunk ${msg.chunk} has ${msg.ids.length} ids but ${msg.rows.length} rows`);
    }
    const prior = this.stmt.chunk.get(msg.chunk);
    if (prior) return { count: prior.rows, duplicate: true };
    const post = this.stmt.postState.get(msg.post)?.state;
    if (post === 'aborted')
      throw new RejectedError(`chunk ${msg.chunk} belongs to POST ${msg.post}, which was aborted`, 'aborted');
    return this.tx(entryId, () => {
      const t = this.ensureTable(msg.table);
      if (msg.indexes) this.applyIndexes(t, msg.indexes);
      const insert = this.db.prepare(`INSERT INTO ${t.ident} (_id, chunk, doc) VALUES (?, ?, ?)`);
      const digest = new ChunkDigest();
      for (let i = 0; i < msg.ids.length; i++) {
        digest.add(msg.ids[i], msg.rows[i]);
        try {
          insert.run(msg.ids[i], msg.chunk, msg.rows[i]);
        } catch (e) {
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
            throw new RejectedError(
              `duplicate _id ${JSON.stringify(msg.ids[i])} in table ${msg.table} (row ${i + 1} of chunk ${msg.chunk})`,
              'duplicate-id',
              i + 1,
            );
          }
          throw e;
        }
      }
      this.stmt.insertChunk.run(
        msg.chunk,
        msg.table,
        msg.post,
        msg.replicas.join(','),
        msg.ids.length,
        post === 'committed' ? 1 : 0,
        digest.toString(),
        Date.now(),
      );
      return { count: msg.ids.length, duplicate: false };
    });
  }

  /** COMMIT: makes the chunks of a POST visible to reads (and any of its chunks that arrive later). */
  commitPost(op: string, post: string, entryId: string): ApplyResult {
    return this.once(op, 'COMMIT', entryId, () => {
      if (this.stmt.postState.get(post)?.state === 'aborted')
        throw new RejectedError(`POST ${post} was aborted; it cannot commit`);
      this.stmt.setPost.run(post, 'committed', Date.now());
      return { count: this.stmt.commitChunks.run(post).changes };
    });
  }

  /** ABORT: removes every chunk of a POST that will never commit, and refuses its late chunks. */
  abortPost(op: string, post: string, entryId: string): ApplyResult {
    return this.once(op, 'ABORT', entryId, () => {
      if (this.stmt.postState.get(post)?.state === 'committed')
        throw new RejectedError(`POST ${post} is committed; it cannot be aborted`);
      this.stmt.setPost.run(post, 'aborted', Date.now());
      let rows = 0;
      for (const c of this.stmt.chunksOfPost.all(post)) {
        const t = this.existingTable(c.tbl);
        if (t) rows += this.db.prepare(`DELETE FROM ${t.ident} WHERE chunk = ?`).run(c.chunk).changes;
        this.stmt.deleteChunk.run(c.chunk);
      }
      return { count: rows };
    });
  }

  /** DROP_CHUNKS: removes chunks re-homed elsewhere while this worker was lost, or moved away. */
  dropChunks(op: string, chunks: string[], entryId: string): ApplyResult {
    return this.once(op, 'DROP_CHUNKS', entryId, () => {
      let rows = 0;
      for (const chunk of chunks) {
        const c = this.stmt.chunkTable.get(chunk);
        if (!c) continue;
        const t = this.existingTable(c.tbl);
        if (t) rows += this.db.prepare(`DELETE FROM ${t.ident} WHERE chunk = ?`).run(chunk).changes;
        this.stmt.deleteChunk.run(chunk);
      }
      return { count: rows };
    });
  }

  /** SET_REPLICAS: a chunk's replica list changed after a repair or a move (kept for operators). */
  setReplicas(op: string, chunk: string, replicas: string[], entryId: string): ApplyResult {
    return this.once(op, 'SET_REPLICAS', entryId, () => ({
      count: this.stmt.setReplicas.run(replicas.join(','), chunk).changes,
    }));
  }

  /** UPDATE: sets fields on matching rows; reports rows changed per chunk. */
  update(msg: UpdateMessage, entryId: string): ApplyResult {
    const where = compileFilter(msg.where);
    const { sql: expr, params: args } = updatedDoc(msg);
    return this.once(msg.op, msg.type, entryId, () => {
      const t = this.existingTable(msg.table);
      if (!t) return { count: 0, counts: {} };
      const rows = this.db
        .prepare<unknown[], { chunk: string }>(
          `UPDATE ${t.ident} SET doc = ${expr} WHERE (${where.sql}) AND ${COMMITTED} RETURNING chunk`,
        )
        .all(...args, ...where.params, msg.table);
      const result = perChunk(rows);
      this.redigest(t, Object.keys(result.counts));
      return result;
    });
  }

  /**
   * UPSERT (with the COMMIT of an upsert POST): each row whose `_id` this shard holds
   * committed is replaced, or has the given fields set (`merge`, top-level fields); a row
   * deleted since the POST checked it is stored again in the chunk that held it, when this
   * shard holds that chunk. Reports rows written per chunk.
   */
  upsert(msg: UpsertMessage, entryId: string): ApplyResult {
    if (msg.ids.length !== msg.rows.length || msg.ids.length !== msg.chunks.length)
      throw new RejectedError(
        `UPSERT ${msg.op} has ${msg.ids.length} ids, ${msg.chunks.length} chunks and ${msg.rows.length} rows`,
      );
    return this.once(msg.op, msg.type, entryId, () => {
      const t = this.existingTable(msg.table);
      if (!t) return { count: 0, counts: {} };
      const find = this.db.prepare<[string], { chunk: string; doc: string; committed: number | null }>(
        `SELECT r.chunk, r.doc, c.committed FROM ${t.ident} r LEFT JOIN _chunks c ON c.chunk = r.chunk WHERE r._id = ?`,
      );
      const set = this.db.prepare(`UPDATE ${t.ident} SET doc = ? WHERE _id = ?`);
      const insert = this.db.prepare(`INSERT INTO ${t.ident} (_id, chunk, doc) VALUES (?, ?, ?)`);
      const holds = this.db.prepare<[string], { tbl: string; committed: number }>(
        'SELECT tbl, committed FROM _chunks WHERE chunk = ?',
      );
      const rows: { chunk: string }[] = [];
      for (let i = 0; i < msg.ids.length; i++) {
        const id = msg.ids[i];
        const row = find.get(id);
        if (row) {
          // Only the row the POST found, in its chunk (chunk ids are never reused: a row of the
          // same _id in another chunk is another table's, dropped and created again meanwhile),
          // and only committed: an uncommitted chunk is not there yet for any write.
          if (row.chunk !== msg.chunks[i] || row.committed !== 1) continue;
          set.run(msg.mode === 'replace' ? msg.rows[i] : mergedRow(row.doc, msg.rows[i], id), id);
          rows.push({ chunk: row.chunk });
        } else {
          const c = holds.get(msg.chunks[i]);
          if (c?.tbl !== msg.table || c.committed !== 1) continue;
          insert.run(
            id,
            msg.chunks[i],
            msg.defaults ? mergedRow(JSON.stringify(msg.defaults), msg.rows[i], id) : msg.rows[i],
          );
          rows.push({ chunk: msg.chunks[i] });
        }
      }
      const result = perChunk(rows);
      this.redigest(t, Object.keys(result.counts));
      return result;
    });
  }

  /** DELETE: removes matching rows; reports rows removed per chunk. */
  delete(msg: DeleteMessage, entryId: string): ApplyResult {
    const where = compileFilter(msg.where);
    return this.once(msg.op, msg.type, entryId, () => {
      const t = this.existingTable(msg.table);
      if (!t) return { count: 0, counts: {} };
      const rows = this.db
        .prepare<unknown[], { chunk: string }>(
          `DELETE FROM ${t.ident} WHERE (${where.sql}) AND ${COMMITTED} RETURNING chunk`,
        )
        .all(...where.params, msg.table);
      const result = perChunk(rows);
      this.redigest(t, Object.keys(result.counts));
      return result;
    });
  }

  /** Recomputes the stored digest (and row count) of chunks a write changed. */
  private redigest(t: LocalTable, chunks: string[]): void {
    if (chunks.length === 0) return;
    const read = this.db.prepare<[string], { _id: string; doc: string }>(
      `SELECT _id, doc FROM ${t.ident} WHERE chunk = ?`,
    );
    for (const chunk of chunks) {
      const d = new ChunkDigest();
      for (const r of read.iterate(chunk)) d.add(r._id, r.doc);
      this.stmt.setDigest.run(d.toString(), d.rows, chunk);
    }
  }

  /**
   * For scrub, repair and copy checks: per chunk, the digest recorded when it was last
   * written and the digest of what the file holds now (reader connection). They differ when
   * the file changed outside dstore; reading may also fail outright on a damaged file. A
   * chunk not held, or held but not committed, has no digest but says so.
   */
  *digests(chunks: string[]): Generator<ChunkDigestLine> {
    for (const chunk of chunks) {
      try {
        const info = this.stmt.chunkInfo.get(chunk);
        if (!info) {
          yield { chunk, error: DIGEST_NOT_HELD };
          continue;
        }
        if (!info.committed) {
          yield { chunk, error: DIGEST_UNCOMMITTED };
          continue;
        }
        const t = this.readerTable(info.tbl);
        const d = new ChunkDigest();
        if (t)
          for (const r of this.reader
            .prepare<[string], { _id: string; doc: string }>(`SELECT _id, doc FROM ${t.ident} WHERE chunk = ?`)
            .iterate(chunk))
            d.add(r._id, r.doc);
        yield { chunk, stored: info.digest ?? undefined, actual: d.toString() };
      } catch (e) {
        yield { chunk, error: (e as Error).message };
      }
    }
  }

  /** Closes both connections (checkpointing the WAL). */
  close(): void {
    for (const r of this.idleReaders.splice(0)) r.close();
    if (this.reader.open) this.reader.close();
    if (this.db.open) this.db.close();
  }
}

/** UPDATE and DELETE reach committed rows only: an uncommitted POST is not there yet. */
const COMMITTED = 'chunk IN (SELECT chunk FROM _chunks WHERE tbl = ? AND committed = 1)';

/** `stored` with the top-level fields of `patch` set (JSON objects), `_id` first. */
function perChunk(rows: { chunk: string }[]): { count: number; counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  for (const r of rows) counts[r.chunk] = (counts[r.chunk] ?? 0) + 1;
  return { count: rows.length, counts };
}
