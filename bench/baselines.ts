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
import { PostMessage } from '../common/messages';
import type { QuerySpec } from '../common/query';
import { planFetch } from '../worker/fetch-query';
import { lines, type DataSet } from './data';

const TX_ROWS = 1000;
const IDENT = 't_1';

/** One SQLite file holding the data set, laid out as a worker's shard table. */
export class SqliteBaseline {
  readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // The same durability as a worker's default (DSTORE_SQLITE_SYNC=full).
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE ${IDENT} (_id TEXT PRIMARY KEY, chunk TEXT NOT NULL, doc TEXT NOT NULL)`);
    this.db.exec(`CREATE INDEX ${IDENT}_chunk ON ${IDENT} (chunk)`);
  }

  /**
   * Reads the NDJSON file, parses each row (as any loader must, to find `_id`) and inserts
   * it in transactions of 1000 rows. Returns rows/s.
   */
  async insert(data: DataSet): Promise<number> {
    const insert = this.db.prepare(`INSERT INTO ${IDENT} (_id, chunk, doc) VALUES (?, ?, ?)`);
    const tx = this.db.transaction((batch: string[], chunk: string) => {
      for (const line of batch) insert.run((JSON.parse(line) as { _id: string })._id, chunk, line);
    });
    const t0 = performance.now();
    let batch: string[] = [];
    let n = 0;
    for await (const line of lines(data.file)) {
      batch.push(line);
      if (batch.length === TX_ROWS) {
        tx(batch, `c${String(n++).padStart(6, '0')}`);
        batch = [];
      }
    }
    if (batch.length) tx(batch, `c${String(n++).padStart(6, '0')}`);
    return data.rows / ((performance.now() - t0) / 1000);
  }

  /**
   * Answers `q` the way one worker holding every row would: the same SQL (planFetch) and
   * the same per-row output text, written to /dev/null in 256 KiB writes. Returns the
   * lines and the time taken.
   */
  query(q: QuerySpec): { lines: string[]; ms: number; count: number } {
    const t0 = performance.now();
    const plan = planFetch(IDENT, q, undefined);
    const fd = fs.openSync('/dev/null', 'w');
    const keep: string[] = [];
    let count = 0;
    let buf: string[] = [];
    let bytes = 0;
    try {
      for (const row of this.db.prepare(plan.sql).iterate(...plan.params) as IterableIterator<
        Record<string, unknown>
      >) {
        const line = plan.line(row);
        count++;
        if (keep.length < 2000) keep.push(line);
        buf.push(line);
        bytes += line.length + 1;
        if (bytes >= 262_144) {
          fs.writeSync(fd, buf.join('\n') + '\n');
          buf = [];
          bytes = 0;
        }
      }
      if (buf.length) fs.writeSync(fd, buf.join('\n') + '\n');
    } finally {
      fs.closeSync(fd);
    }
    return { lines: keep, ms: performance.now() - t0, count };
  }

  /** p50/p99 (ms) of point lookups by `_id`, one prepared statement per lookup as a worker does. */
  lookups(ids: string[]): { p50: number; p99: number } {
    const times: number[] = [];
    for (const id of ids) {
      const t0 = performance.now();
      const plan = planFetch(IDENT, { where: { _id: id } }, undefined);
      const got = this.db.prepare(plan.sql).all(...plan.params);
      if (got.length !== 1) throw new Error(`baseline lookup of ${id} found ${got.length} rows`);
      times.push(performance.now() - t0);
    }
    return percentiles(times);
  }

  close(): void {
    this.db.close();
  }
}

/** p50 and p99 of a list of durations. */
export function percentiles(times: number[]): { p50: number; p99: number } {
  const s = [...times].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: at(0.5), p99: at(0.99) };
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
