/**
 * What dstore is compared with, each on the same rows in the same run: one SQLite file
 * written and read by one process (the per-node limit), Redis streams alone (the broker
 * limit) and, when a server answers, PostgreSQL COPY.
 */
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import Redis from 'ioredis';
import { compileFilter, indexKeyExpr, jsonPath } from '../common/filter';
import { indexedExpr } from '../common/indexes';
import { PostMessage } from '../common/messages';
import type { QuerySpec } from '../common/query';
import { combineAggregates } from '../coordinator/fetch-merger';
import { planFetch } from '../worker/fetch-query';
import { lines, type DataSet } from './data';

const TX_ROWS = 1000;
const OUT_BYTES = 262_144;

/** What a baseline read returned: the line count, the first 2000 lines, the time taken. */
export interface BaselineRead {
  lines: string[];
  ms: number;
  count: number;
}

/**
 * One SQLite file holding the data set as plainly as one process would keep it: WAL,
 * `synchronous` as given, `t (_id TEXT PRIMARY KEY, doc TEXT)`. Reads answer the bench's
 * queries with the same JSON semantics as a worker (compileFilter, json_extract) and write
 * their rows as NDJSON to /dev/null, so output costs what it costs dstore's client.
 */
export class SqliteBaseline {
  readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly sink: number;

  constructor(
    readonly file: string,
    readonly sync: 'normal' | 'full',
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${sync.toUpperCase()}`);
    this.db.exec('CREATE TABLE t (_id TEXT PRIMARY KEY, doc TEXT NOT NULL)');
    this.sink = fs.openSync('/dev/null', 'w');
  }

  private prepare(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  /**
   * Reads the NDJSON file, parses each row and serialises it again (as any loader that
   * checks its input must), and inserts it with one prepared statement in transactions of
   * 1000 rows. Returns rows/s.
   */
  async insert(data: DataSet): Promise<number> {
    return this.writeRows(data, this.prepare('INSERT INTO t (_id, doc) VALUES (?, ?)'));
  }

  /**
   * Writes every row of `data` whether or not its `_id` is stored, as {@link insert} does:
   * `replace` swaps the stored JSON, `merge` patches it (SQLite's json_patch) with the row's
   * fields. One `INSERT … ON CONFLICT (_id) DO UPDATE` per row. Returns rows/s.
   */
  async upsert(data: DataSet, mode: 'replace' | 'merge'): Promise<number> {
    const set = mode === 'replace' ? 'excluded.doc' : 'json_patch(doc, excluded.doc)';
    return this.writeRows(
      data,
      this.prepare(`INSERT INTO t (_id, doc) VALUES (?, ?) ON CONFLICT (_id) DO UPDATE SET doc = ${set}`),
    );
  }

  /** Runs `write(_id, json)` for each row of the file, parsed and serialised again, in transactions of TX_ROWS. */
  private async writeRows(data: DataSet, write: Database.Statement): Promise<number> {
    const tx = this.db.transaction((batch: string[]) => {
      for (const line of batch) {
        const row = JSON.parse(line) as { _id: string };
        write.run(row._id, JSON.stringify(row));
      }
    });
    const t0 = performance.now();
    let batch: string[] = [];
    for await (const line of lines(data.file)) {
      batch.push(line);
      if (batch.length === TX_ROWS) {
        tx(batch);
        batch = [];
      }
    }
    if (batch.length) tx(batch);
    return data.rows / ((performance.now() - t0) / 1000);
  }

  /** Runs `sql`, writing each row's line to /dev/null in 256 KiB writes and keeping the first 2000. */
  private read(sql: string, params: unknown[], line: (row: Record<string, unknown>) => string): BaselineRead {
    const t0 = performance.now();
    const keep: string[] = [];
    let count = 0;
    let buf: string[] = [];
    let bytes = 0;
    for (const row of this.prepare(sql).iterate(...params) as IterableIterator<Record<string, unknown>>) {
      const text = line(row);
      count++;
      if (keep.length < 2000) keep.push(text);
      buf.push(text);
      bytes += text.length + 1;
      if (bytes >= OUT_BYTES) {
        fs.writeSync(this.sink, buf.join('\n') + '\n');
        buf = [];
        bytes = 0;
      }
    }
    if (buf.length) fs.writeSync(this.sink, buf.join('\n') + '\n');
    return { lines: keep, ms: performance.now() - t0, count };
  }

  /**
   * Answers `q` (where, sort, limit; or groupBy + aggregate) with whole rows or final
   * aggregate rows. Aggregates use a worker's SQL (planFetch) and the coordinator's
   * combining, so averages and types come out as dstore's do.
   */
  query(q: QuerySpec): BaselineRead {
    if (q.fields) throw new Error('the SQLite baseline answers whole rows only');
    const doc = (r: Record<string, unknown>) => r.doc as string;
    if (q.aggregate) {
      const t0 = performance.now();
      const plan = planFetch('t', q, undefined, this.indexed);
      const parts = (this.prepare(plan.sql).all(...plan.params) as Record<string, unknown>[]).map(plan.line);
      const groups = q.groupBy ?? [];
      const rows = [...combineAggregates([{ rows: parts.join('\n') }], groups, q.aggregate, q.sort, q.limit)];
      if (rows.length) fs.writeSync(this.sink, rows.join('\n') + '\n');
      return { lines: rows, ms: performance.now() - t0, count: rows.length };
    }
    if (!q.where && !q.sort && q.limit === undefined) return this.read('SELECT doc FROM t', [], doc);
    const where = compileFilter(q.where, 'where', this.indexed);
    const params = [...where.params];
    let sql = `SELECT doc FROM t WHERE ${where.sql}`;
    if (q.sort?.length) {
      const keys = q.sort.map((s) => {
        const dir = s.dir === 'desc' ? 'DESC' : 'ASC';
        if (s.field === '_id') return `_id ${dir}`;
        const path = jsonPath(s.field);
        if (this.indexed.has(path)) return `${indexKeyExpr(path)} ${dir}`;
        params.push(path);
        return `json_extract(doc, ?) ${dir}`;
      });
      sql += ` ORDER BY ${keys.join(', ')}, _id ASC`;
    }
    if (q.limit !== undefined) {
      sql += ' LIMIT ?';
      params.push(q.limit);
    }
    return this.read(sql, params, doc);
  }

  /** JSON paths of the fields indexed by {@link createIndex}: filters and sorts on them use it, as on a worker. */
  private readonly indexed = new Set<string>();

  /** The index a worker builds for `fields` (the same expressions), and the time it took (ms). */
  createIndex(name: string, fields: string[]): number {
    const t0 = performance.now();
    this.db.exec(`CREATE INDEX ${name} ON t (${fields.map(indexedExpr).join(', ')})`);
    for (const f of fields) this.indexed.add(jsonPath(f));
    return performance.now() - t0;
  }

  /** p50/p99 (ms) of point lookups by `_id` through {@link query}; throws unless each finds its row. */
  lookups(ids: string[]): { p50: number; p99: number } {
    const times: number[] = [];
    for (const id of ids) {
      const r = this.query({ where: { _id: id } });
      if (r.count !== 1) throw new Error(`baseline lookup of ${id} found ${r.count} rows`);
      times.push(r.ms);
    }
    return percentiles(times);
  }

  close(): void {
    fs.closeSync(this.sink);
    this.db.close();
  }
}

/** p10, p50, p90 and p99 of a list of durations. */
export function percentiles(times: number[]): { p10: number; p50: number; p90: number; p99: number } {
  const s = [...times].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p10: at(0.1), p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

/**
 * The broker limit: the data set cut into the coordinator's chunk payloads (PostMessage
 * fields, 1000 rows each), XADDed with pipelined windows to one stream while one consumer
 * XREADs them back. Returns rows/s from the first XADD to the last entry read.
 */
export async function brokerLimit(
  redisUrl: string,
  prefix: string,
  data: DataSet,
  chunkRows = 1000,
  window = 16,
): Promise<number> {
  const producer = new Redis(redisUrl, { connectionName: `${prefix}:bench-producer` });
  const consumer = new Redis(redisUrl, { connectionName: `${prefix}:bench-consumer` });
  const stream = `${prefix}:bench:broker`;
  try {
    const chunks = Math.ceil(data.rows / chunkRows);
    const t0 = performance.now();
    const reading = (async () => {
      let last = '0-0';
      let seen = 0;
      while (seen < chunks) {
        const res = (await consumer.xread('COUNT', 16, 'BLOCK', 5000, 'STREAMS', stream, last)) as
          [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        if (entries.length === 0) throw new Error(`broker bench: no entry for 5 s after ${seen} of ${chunks}`);
        for (const [id] of entries) last = id;
        seen += entries.length;
        await consumer.xtrim(stream, 'MINID', last);
      }
    })();
    let ids: string[] = [];
    let rows: string[] = [];
    let p = producer.pipeline();
    let queued = 0;
    let n = 0;
    const send = async () => {
      const msg = Object.assign(new PostMessage(), {
        chunk: `01BENCH${String(n++).padStart(19, '0')}`,
        post: '01BENCHPOST0000000000000000',
        table: 'bench',
        replicas: ['w1', 'w2'],
        replyTo: `${prefix}:coord:bench:replies`,
        ids,
        rows,
      });
      p.xadd(stream, '*', ...msg.toArgs());
      ids = [];
      rows = [];
      if (++queued >= window) {
        await p.exec();
        p = producer.pipeline();
        queued = 0;
      }
    };
    for await (const line of lines(data.file)) {
      ids.push((JSON.parse(line) as { _id: string })._id);
      rows.push(line);
      if (rows.length === chunkRows) await send();
    }
    if (rows.length) await send();
    if (queued) await p.exec();
    await reading;
    return data.rows / ((performance.now() - t0) / 1000);
  } finally {
    await producer.del(stream).catch(() => undefined);
    producer.disconnect();
    consumer.disconnect();
  }
}

/**
 * PostgreSQL COPY of the same rows into a table of its own (`id text primary key, doc
 * jsonb`), dropped afterwards. Returns rows/s, or a note saying why it was skipped.
 */
export async function pgCopy(
  pgUrl: string | undefined,
  data: DataSet,
): Promise<{ rowsPerSec?: number; note?: string }> {
  if (!pgUrl) return { note: 'PG_URL not set' };
  let pg: typeof import('pg');
  let copy: typeof import('pg-copy-streams');
  try {
    pg = require('pg');
    copy = require('pg-copy-streams');
  } catch (e) {
    return { note: `pg / pg-copy-streams not installed (${(e as Error).message})` };
  }
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
  } catch (e) {
    return { note: `no PostgreSQL at PG_URL (${(e as Error).message})` };
  }
  const table = `dstore_bench_${process.pid}_${Date.now()}`;
  try {
    await client.query(`CREATE TABLE ${table} (id text PRIMARY KEY, doc jsonb NOT NULL)`);
    const t0 = performance.now();
    async function* text(): AsyncGenerator<string> {
      let out: string[] = [];
      for await (const line of lines(data.file)) {
        // COPY text format: backslash is the escape character; JSON has no raw tab or newline.
        out.push(`${(JSON.parse(line) as { _id: string })._id}\t${line.replace(/\\/g, '\\\\')}\n`);
        if (out.length === 1000) {
          yield out.join('');
          out = [];
        }
      }
      if (out.length) yield out.join('');
    }
    await pipeline(Readable.from(text()), client.query(copy.from(`COPY ${table} (id, doc) FROM STDIN`)));
    return { rowsPerSec: data.rows / ((performance.now() - t0) / 1000) };
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

/** Removes a SQLite file and its WAL companions. */
export function removeSqlite(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
}
