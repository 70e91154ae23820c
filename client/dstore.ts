import {
  DEFAULT_PAGE_SIZE,
  type DeleteResult,
  type IndexList,
  type InsertResult,
  type OnConflict,
  type TableInfo,
  type UpdateResult,
} from '../common/api';
import type { AggregateSpec, SortSpec } from '../common/query';
import type { ChangeEvent, ChangeRetention } from '../common/changes';
import { readAnswer, type Trailer } from './answers';
import { DstoreError } from './errors';
import { Transport, tablePath } from './http';

/** A stored row: its `_id` and its fields. */
export type Row = { _id: string } & Record<string, unknown>;

/** Options of {@link Dstore}. */
export interface DstoreOptions {
  /** The coordinator's URL. @defaultValue `http://127.0.0.1:7070` */
  url?: string;
  /** The token secret (`Authorization: Bearer`) of a cluster with auth on (docs/security.md). */
  token?: string;
}

/** A read: the filter language of docs/filter.md, a projection, a sort, and a limit. */
export interface Query {
  where?: Record<string, unknown>;
  /** Fields to answer (whole rows without it); name `_id` to have it. */
  fields?: string[];
  /** Sort keys, `asc` by default; ties are broken by `_id`. */
  sort?: (Omit<SortSpec, 'dir'> & { dir?: SortSpec['dir'] })[];
  /** At most this many rows in all (every row without it). */
  limit?: number;
}

/** Options of {@link Table.query}. */
export interface QueryOptions {
  /** Rows asked of the server per page (each page a request of its own). @defaultValue 1000 */
  pageSize?: number;
}

/** One page of a read ({@link Table.page}). */
export interface Page<T> {
  rows: T[];
  /** The cursor of the next page; absent on the last. */
  next?: string;
  /** Set when some chunks had no live replica and `partial` was asked: the page is not complete. */
  partial?: { missingWorkers: string[]; missingChunks: number };
}

/** An aggregate read ({@link Table.aggregate}). */
export interface AggregateQuery {
  where?: Record<string, unknown>;
  aggregate: AggregateSpec[];
  groupBy?: string[];
  sort?: Query['sort'];
  limit?: number;
}

/** A change of a typed table's columns ({@link Dstore.alterTable}). */
export interface AlterTable {
  addColumns?: Record<string, string | { type: string; default?: unknown }>;
  dropColumns?: string[];
  /** Turns the table's change stream on (true, or a retention) or off (false). */
  changes?: boolean | ChangeRetention;
}

/** What {@link Dstore.alterTable} answers. */
export interface AlterResult {
  /** The table's new definition. */
  table: TableInfo;
  added: string[];
  dropped: string[];
  /** Stored rows given a default or stripped of a dropped column. */
  rowsChanged?: number;
  /** Workers that have the rows change queued but not applied yet. */
  pendingWorkers?: string[];
}

/** What can be inserted: rows, as an array or any (async) iterable. */
export type Rows<T> = Iterable<T> | AsyncIterable<T>;

const DEFAULT_URL = 'http://127.0.0.1:7070';

/**
 * A client of a dstore cluster (any of its coordinators):
 *
 * ```ts
 * const db = new Dstore({ url: 'http://127.0.0.1:7070' });
 * await db.createTable('events');
 * const events = db.table<{ city: string; amount: number }>('events');
 * await events.insert([{ city: 'Oslo', amount: 12 }]);
 * for await (const row of events.query({ where: { city: 'Oslo' }, sort: [{ field: 'amount' }] })) console.log(row);
 * ```
 *
 * Every failure is a {@link DstoreError} carrying the server's `status`, `code` and details.
 */
export class Dstore {
  /** The HTTP transport (requests and NDJSON streams), for routes this class does not cover. */
  readonly http: Transport;

  constructor(opts: DstoreOptions | string = {}) {
    const o = typeof opts === 'string' ? { url: opts } : opts;
    this.http = new Transport((o.url ?? DEFAULT_URL).replace(/\/+$/, ''), o.token);
  }

  /** A table by name (no request is made until it is used). */
  table<T extends object = Record<string, unknown>>(name: string): Table<T> {
    return new Table<T>(this.http, name);
  }

  /** Creates a table; `created` is false when it existed with the same schema (a different one is a 409). */
  async createTable(
    name: string,
    opts: { schema?: Record<string, string> | string; changes?: boolean | ChangeRetention } = {},
  ): Promise<{ table: TableInfo; created: boolean }> {
    return this.http.request('PUT', tablePath(name), {
      ...(opts.schema === undefined ? {} : { schema: opts.schema }),
      ...(opts.changes === undefined ? {} : { changes: opts.changes }),
    });
  }

  /**
   * Adds or drops columns of a typed table: `addColumns` `{"col": "type"}` or
   * `{"col": {"type": "integer", "default": 0}}` (stored rows get the default), `dropColumns`
   * `["col"]` (removed from every row).
   */
  async alterTable(name: string, change: AlterTable): Promise<AlterResult> {
    return this.http.request('PATCH', tablePath(name), change);
  }

  /** Drops a table and every row of it. */
  async dropTable(name: string): Promise<{ dropped: string }> {
    return this.http.request('DELETE', tablePath(name));
  }

  /** Every table; with `stats`, each one's rows, chunks and size. */
  async tables(opts: { stats?: boolean } = {}): Promise<TableInfo[]> {
    return (await this.http.request<{ tables: TableInfo[] }>('GET', `/tables${opts.stats ? '?stats=1' : ''}`)).tables;
  }

  /** The cluster at a glance: workers, coordinators, Redis, queues (`GET /status`). */
  async status(): Promise<Record<string, unknown>> {
    return this.http.request('GET', '/status');
  }

  /** The workers the cluster knows, live or not (`GET /workers`). */
  async workers(): Promise<{ id: string; live: boolean; draining: boolean; age: number; status?: unknown }[]> {
    return (await this.http.request<{ workers: never[] }>('GET', '/workers')).workers;
  }
}

/** One table of a {@link Dstore}. */
export class Table<T extends object = Record<string, unknown>> {
  /** The table's secondary indexes (docs/filter.md, "Indexes"). */
  readonly indexes: Indexes;

  constructor(
    private readonly http: Transport,
    /** The table's name. */
    readonly name: string,
  ) {
    this.indexes = new Indexes(http, name);
  }

  /** The table's definition; with `stats`, its rows, chunks and size. */
  async info(opts: { stats?: boolean } = {}): Promise<TableInfo> {
    return this.http.request('GET', tablePath(this.name, opts.stats ? '?stats=1' : ''));
  }

  /**
   * Stores rows, all or none: an array, or any (async) iterable, streamed to the server as
   * NDJSON in one request (at most `DSTORE_MAX_ROWS_PER_REQUEST` rows). A row without `_id`
   * gets one. A row whose `_id` is stored is a 409 and nothing is stored, unless
   * `onConflict` says to replace it or merge into it (see {@link upsert}).
   */
  async insert(rows: Rows<T | (T & { _id: string })>, opts: { onConflict?: OnConflict } = {}): Promise<InsertResult> {
    const q = opts.onConflict && opts.onConflict !== 'error' ? `?onConflict=${opts.onConflict}` : '';
    return this.http.request('POST', tablePath(this.name, `/records${q}`), {
      contentType: 'application/x-ndjson',
      body: ndjsonStream(rows),
    });
  }

  /**
   * Writes rows whether or not their `_id` is stored, all or none: a stored row is replaced
   * whole (`replace`, the default) or has the given top-level fields set (`merge`); the others
   * are inserted. The answer counts `inserted` and `replaced` (or `merged`) apart.
   */
  async upsert(rows: Rows<T & { _id: string }>, opts: { mode?: 'replace' | 'merge' } = {}): Promise<InsertResult> {
    return this.insert(rows, { onConflict: opts.mode ?? 'replace' });
  }

  /**
   * The rows a query selects, as an async iterator that reads page after page (each a
   * request of `pageSize` rows that continues after the last row of the one before), so a
   * large result costs the memory of one page. Without `sort` the order is `_id`. Following
   * the pages yields every row that existed when the first was read exactly once, while
   * others write (docs/consistency.md, "Pages"). A read that cannot be exact fails with a
   * {@link DstoreError} (503 naming the workers), never a short answer.
   */
  async *query(q: Query = {}, opts: QueryOptions = {}): AsyncGenerator<T & { _id?: string }> {
    const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1)
      throw new DstoreError(`pageSize must be a whole number of 1 or more, got ${String(pageSize)}`);
    let left = q.limit ?? Infinity;
    let cursor: string | undefined;
    while (left > 0) {
      const page = await this.page<T & { _id?: string }>({ ...q, limit: Math.min(pageSize, left) }, cursor);
      left -= page.rows.length;
      yield* page.rows;
      if (page.next === undefined) return;
      cursor = page.next;
    }
  }

  /**
   * One page of a query: at most `q.limit` rows, and the cursor of the next page when more
   * follow (pass it back with the same query). With `partial`, chunks that have no live
   * replica are left out and the page says so, instead of failing.
   */
  async page<R = T & { _id?: string }>(
    q: Query & { limit: number },
    cursor?: string,
    opts: { partial?: boolean } = {},
  ): Promise<Page<R>> {
    const rows: R[] = [];
    const body = { ...q, ...(cursor === undefined ? {} : { cursor }), ...(opts.partial ? { partial: true } : {}) };
    const end = await readAnswer(this.http.streamLineBatches(tablePath(this.name, '/query'), body), (lines) => {
      for (const l of lines) rows.push(JSON.parse(l) as R);
    });
    const partial = failOn(end.trailer);
    return { rows, ...(end.next === undefined ? {} : { next: end.next }), ...(partial ? { partial } : {}) };
  }

  /** One row by `_id`, or undefined when the table has none. */
  async get(id: string): Promise<(T & { _id: string }) | undefined> {
    try {
      return await this.http.request('GET', tablePath(this.name, `/records/${encodeURIComponent(id)}`));
    } catch (e) {
      if (e instanceof DstoreError && e.status === 404 && e.code === 'not_found' && e.details.id === id)
        return undefined;
      throw e;
    }
  }

  /** Aggregates (`count`, `sum`, `min`, `max`, `avg`), grouped or not: one row per group. */
  async aggregate(q: AggregateQuery): Promise<Record<string, unknown>[]> {
    const rows: Record<string, unknown>[] = [];
    const end = await readAnswer(this.http.streamLineBatches(tablePath(this.name, '/query'), q), (lines) => {
      for (const l of lines) rows.push(JSON.parse(l) as Record<string, unknown>);
    });
    failOn(end.trailer);
    return rows;
  }

  /** The rows `where` selects (every row without it), counted exactly. */
  async count(where?: Record<string, unknown>): Promise<number> {
    const [row] = await this.aggregate({ ...(where ? { where } : {}), aggregate: [{ op: 'count', as: 'n' }] });
    return row.n as number;
  }

  /** Sets fields of every row `where` selects (`{}` for all). */
  async update(where: Record<string, unknown>, set: Partial<T>): Promise<UpdateResult> {
    return this.http.request('PATCH', tablePath(this.name, '/records'), { where, set });
  }

  /** Deletes every row `where` selects (`{}` for all). */
  async delete(where: Record<string, unknown>): Promise<DeleteResult> {
    return this.http.request('DELETE', tablePath(this.name, '/records'), { where });
  }

  /**
   * The table's committed changes as they happen, one event per row, in its write order
   * (a table created or altered with `changes`). Starts at the end, or after the event whose
   * `token` is `opts.after` (keep the last token seen to resume after a disconnect, through
   * any coordinator, without a gap or a repeat). Runs until the loop breaks; fails with a
   * {@link DstoreError} (410 `changes_lost`) when events after `after` are no longer kept.
   */
  async *watch(opts: { after?: string } = {}): AsyncGenerator<ChangeEvent> {
    const q = opts.after === undefined ? '' : `?after=${encodeURIComponent(opts.after)}`;
    for await (const lines of this.http.streamLineBatches(tablePath(this.name, `/changes${q}`), undefined, 'GET')) {
      for (const line of lines) {
        const e = JSON.parse(line) as ChangeEvent & { _error?: { error: string; message: string } };
        if (e._error) throw new DstoreError(e._error.message, undefined, e._error.error);
        yield e;
      }
    }
  }
}

/** The secondary indexes of one table. */
export class Indexes {
  constructor(
    private readonly http: Transport,
    private readonly table: string,
  ) {}

  /** Declares an index on `fields` (built on every worker in the background); `created` is false if it existed. */
  async create(
    name: string,
    fields: string[],
  ): Promise<{ table: string; index: string; fields: string[]; created: boolean }> {
    return this.http.request('PUT', tablePath(this.table, `/indexes/${encodeURIComponent(name)}`), { fields });
  }

  /** The table's indexes, each with its state (`building`, `ready`, `failed`) on every worker. */
  async list(): Promise<IndexList> {
    return this.http.request('GET', tablePath(this.table, '/indexes'));
  }

  /** Drops an index on every worker. */
  async drop(name: string): Promise<{ table: string; dropped: string }> {
    return this.http.request('DELETE', tablePath(this.table, `/indexes/${encodeURIComponent(name)}`));
  }
}

/** Throws the error a read ended with; returns what a partial read left out. */
function failOn(t: Trailer | undefined): Page<unknown>['partial'] {
  if (!t) return undefined;
  if (t.kind === 'error') throw new DstoreError(t.message, undefined, t.code, t.details);
  return { missingWorkers: t.missingWorkers, missingChunks: t.missingChunks };
}

/** Rows as an NDJSON byte stream, pulled as the request is sent. */
function ndjsonStream<T>(rows: Rows<T>): ReadableStream<Uint8Array> {
  const it = Symbol.asyncIterator in rows ? rows[Symbol.asyncIterator]() : toAsync(rows[Symbol.iterator]());
  const enc = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let text = '';
      // Up to ~64 KiB a pull: one write per row would cost a syscall per row.
      while (text.length < 65_536) {
        const r = await it.next();
        if (r.done) {
          if (text) controller.enqueue(enc.encode(text));
          controller.close();
          return;
        }
        text += JSON.stringify(r.value) + '\n';
      }
      controller.enqueue(enc.encode(text));
    },
    async cancel() {
      await it.return?.();
    },
  });
}

function toAsync<T>(it: Iterator<T>): AsyncIterator<T> {
  return {
    next: async () => it.next(),
    return: async () => it.return?.() ?? { done: true, value: undefined },
  };
}
