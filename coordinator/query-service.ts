import type { CoordinatorOptions } from '../common/config';
import { isNarrowRead } from '../common/indexes';
import { normalizeQuery, withAfter, type QuerySpec } from '../common/query';
import type { SqlValue } from '../common/sqlite-order';
import type { Catalogue } from './catalogue';
import type { CursorCodec } from './cursor';
import type { TableEncryption } from './encryption';
import { ApiError } from './errors';
import type { FetchMerger, ReadExplain, ReadPiece } from './fetch-merger';
import { limitExceeded } from './limits';
import { checkQueryFields } from './schema';

/**
 * What a read answers, in order: rows, then the cursor to the next page when a limit cut the
 * answer short, then at most one partial trailer; or only the plan.
 */
export type QueryEvent =
  | { kind: 'rows'; text: string; count: number }
  | { kind: 'next'; cursor: string }
  | { kind: 'partial'; missingWorkers: string[]; missingChunks: number }
  | { kind: 'explain'; plan: ReadExplain };

/** Options of one read. */
export interface QueryOptions {
  /** Answer what the live workers hold when some chunk has no live replica, and say so. */
  partial?: boolean;
  /** Answer the plan instead of rows. */
  explain?: boolean;
  /** The `_next` of the page before: this read is the page after it (the same query). */
  cursor?: unknown;
}

/** What {@link QueryService} needs of its coordinator. */
export interface QueryDeps {
  catalogue: Pick<Catalogue, 'require'>;
  encryption: Pick<TableEncryption, 'checkQuery' | 'cipherFor' | 'decryptRow'>;
  fetch: Pick<FetchMerger, 'start' | 'read'>;
  cursors: Pick<CursorCodec, 'encode' | 'decode'>;
  /** Times each read, by outcome (`ok`, `error`). */
  timeRead(): (labels: { outcome: 'ok' | 'error' }) => void;
  opts: Pick<CoordinatorOptions, 'maxResultRows' | 'queryTimeoutMs'>;
}

/**
 * The one cap on `limit`: at most `DSTORE_MAX_RESULT_ROWS`. A larger one is a 400 whose
 * body names the setting (`limit`), the query key (`field: "limit"`), the value and the cap.
 */
export function checkLimit(limit: number | undefined, maxResultRows: number): void {
  if (limit === undefined || limit <= maxResultRows) return;
  throw limitExceeded(
    400,
    'DSTORE_MAX_RESULT_ROWS',
    `limit ${limit} is over DSTORE_MAX_RESULT_ROWS (${maxResultRows}), the most rows one answer may hold; page with a smaller limit, each page ending with {"_next": cursor} to send back as "cursor" (dstore fetch --all)`,
    {
      field: 'limit',
      value: limit,
      max: maxResultRows,
    },
  );
}

/**
 * Plans and runs reads for the HTTP routes: the table from the catalogue, the query checked
 * (shape, the table's schema, encrypted columns, the limit cap) before any worker is asked,
 * rows decrypted, and the whole read held to `DSTORE_QUERY_TIMEOUT_MS` and
 * `DSTORE_MAX_RESULT_ROWS`. It yields typed {@link QueryEvent}s; how they are written (NDJSON,
 * one record, a count) is the caller's.
 */
export class QueryService {
  constructor(private readonly deps: QueryDeps) {}

  /** Checks a query and starts it; throws an {@link ApiError} for anything wrong before rows flow. */
  async open(name: string, raw: QuerySpec, opts: QueryOptions = {}): Promise<QueryCursor> {
    // Issued together with the catalogue lookup: one round trip to Redis, not two.
    const started = this.deps.fetch.start(name, raw.where);
    const table = await this.deps.catalogue.require(name);
    let q = normalizeQuery(raw);
    if (opts.cursor !== undefined) q = withAfter(q, await this.deps.cursors.decode(name, q, opts.cursor));
    checkLimit(q.limit, this.deps.opts.maxResultRows);
    checkQueryFields(q, table.schema);
    this.deps.encryption.checkQuery(table, q);
    const cipher = this.deps.encryption.cipherFor(table, 'read');
    const decryptRow = cipher
      ? (r: Record<string, unknown>) => this.deps.encryption.decryptRow(table, cipher, r)
      : undefined;
    const read = this.deps.fetch.read(
      table.name,
      q,
      { partial: opts.partial, explain: opts.explain, decryptRow, narrow: isNarrowRead(q, table.indexes) },
      started,
    );
    const { after: _after, ...query } = q;
    const next = (after: SqlValue[]) => this.deps.cursors.encode(table.name, query, after);
    return new QueryCursor(read, this.deps.opts, this.deps.timeRead(), next);
  }

  /**
   * One record by `_id`: a read like any other (pruned to the chunk the id index names). A
   * 404 naming table and id when there is none; a 503, as for any read, when a chunk that
   * could hold it has no live replica.
   */
  async recordById(name: string, id: string): Promise<Record<string, unknown>> {
    const cursor = await this.open(name, { where: { _id: id }, limit: 1 });
    for await (const e of cursor) {
      if (e.kind === 'rows' && e.count > 0) {
        await cursor.close();
        return JSON.parse(e.text.split('\n')[0]) as Record<string, unknown>;
      }
    }
    throw new ApiError(404, 'not_found', `table ${name} has no record with _id ${JSON.stringify(id)}`, {
      table: name,
      id,
    });
  }

  /** `count()` of a table, answering what it can (`exact` false when chunks were left out). */
  async count(name: string): Promise<{ rows: number; exact: boolean }> {
    let rows = 0;
    let exact = true;
    for await (const e of await this.open(name, { aggregate: [{ op: 'count' }] }, { partial: true })) {
      if (e.kind === 'partial') exact = false;
      else if (e.kind === 'rows')
        for (const line of e.text.split('\n')) rows += (JSON.parse(line) as { count: number }).count;
    }
    return { rows, exact };
  }
}

/**
 * A running read: its events, each awaited within the read's deadline (a 504 naming
 * `DSTORE_QUERY_TIMEOUT_MS` when it passes), and at most `DSTORE_MAX_RESULT_ROWS` rows (a 400
 * beyond). {@link close} ends it early, so its workers stop sending.
 */
export class QueryCursor implements AsyncIterable<QueryEvent> {
  private readonly deadline: number;
  private rows = 0;
  private finished = false;

  constructor(
    private readonly read: AsyncGenerator<ReadPiece>,
    private readonly opts: Pick<CoordinatorOptions, 'maxResultRows' | 'queryTimeoutMs'>,
    private readonly timer: (labels: { outcome: 'ok' | 'error' }) => void,
    /** The cursor to the page that starts after `[sortKey…, _id]`. */
    private readonly nextCursor: (after: SqlValue[]) => Promise<string>,
  ) {
    this.deadline = Date.now() + opts.queryTimeoutMs;
  }

  /** The next event, or undefined once the read is over. */
  async next(): Promise<QueryEvent | undefined> {
    if (this.finished) return undefined;
    try {
      const r = await this.within();
      if (r.done) {
        this.end('ok');
        return undefined;
      }
      const p = r.value;
      if ('explain' in p) return { kind: 'explain', plan: p.explain };
      if ('partial' in p) return { kind: 'partial', ...p.partial };
      if ('next' in p) return { kind: 'next', cursor: await this.nextCursor(p.next) };
      if ((this.rows += p.count) > this.opts.maxResultRows) {
        throw limitExceeded(
          400,
          'DSTORE_MAX_RESULT_ROWS',
          `the answer has more than DSTORE_MAX_RESULT_ROWS (${this.opts.maxResultRows}) rows; page it: add a limit and send each page's "_next" back as "cursor" (dstore fetch --all), or narrow the filter`,
        );
      }
      return { kind: 'rows', text: p.rows, count: p.count };
    } catch (e) {
      this.end('error');
      throw e;
    }
  }

  /** Rows answered so far. */
  get rowCount(): number {
    return this.rows;
  }

  /** Ends the read early (the client went away, or the caller has what it needs). */
  async close(): Promise<void> {
    if (this.finished) return;
    this.end('ok');
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<QueryEvent> {
    try {
      for (let e = await this.next(); e !== undefined; e = await this.next()) yield e;
    } finally {
      await this.close();
    }
  }

  private end(outcome: 'ok' | 'error'): void {
    if (this.finished) return;
    this.finished = true;
    this.timer({ outcome });
    void this.read.return(undefined).catch(() => undefined);
  }

  /** The read's next piece, or a 504 once the deadline passes. */
  private async within(): Promise<IteratorResult<ReadPiece>> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>(
      (resolve) => (timer = setTimeout(() => resolve('expired'), Math.max(0, this.deadline - Date.now()))),
    );
    try {
      const r = await Promise.race([this.read.next(), expired]);
      if (r !== 'expired') return r;
    } finally {
      clearTimeout(timer);
    }
    const { queryTimeoutMs } = this.opts;
    throw limitExceeded(
      504,
      'DSTORE_QUERY_TIMEOUT_MS',
      `the query ran longer than DSTORE_QUERY_TIMEOUT_MS (${queryTimeoutMs} ms); narrow the filter or add a limit`,
    );
  }
}
