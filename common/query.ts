import { FilterError, compileFilter, parseField } from './filter';
import type { SqlValue } from './sqlite-order';

/** One sort key. `dir` defaults to `asc`. */
export interface SortSpec {
  field: string;
  dir: 'asc' | 'desc';
}

/** Aggregate functions. `avg` travels as sum + count and is divided at the coordinator. */
export const AGGREGATE_OPS = ['count', 'sum', 'min', 'max', 'avg'] as const;
export type AggregateOp = (typeof AGGREGATE_OPS)[number];

/** One aggregate column: `count()` needs no field, the others do. */
export interface AggregateSpec {
  op: AggregateOp;
  field?: string;
  as?: string;
}

/**
 * A read, as the HTTP API takes it and FETCH carries it. With a `limit` (and no aggregate) the
 * rows come in a total order, the sort keys then `_id` (`_id` alone without `sort`), so a page
 * can end with a cursor to the next.
 */
export interface QuerySpec {
  where?: unknown;
  fields?: string[];
  sort?: SortSpec[];
  limit?: number;
  aggregate?: AggregateSpec[];
  groupBy?: string[];
  /**
   * Where a page starts: strictly after the row whose sort keys (as SQLite compared them)
   * and `_id` these are, `[key…, _id]`. Set by the coordinator from a cursor the client sent
   * back (coordinator/cursor.ts); never taken from the HTTP API directly.
   */
  after?: SqlValue[];
}

/**
 * The limits a query shape must stay within. `limit` has no cap here: the one cap on it is
 * the coordinator's `DSTORE_MAX_RESULT_ROWS` (coordinator/api/query-routes.ts), so that a
 * too large limit always meets one rule and one message.
 */
export const QUERY_LIMITS = { fields: 256, sort: 8, aggregate: 32, groupBy: 8 } as const;

/** A query that breaks the rules; `at` names the place (`sort[1].field`). */
export class QueryError extends Error {
  override readonly name = 'QueryError';
  constructor(
    readonly at: string,
    message: string,
  ) {
    super(`${at}: ${message}`);
  }
}

/** The output column name of an aggregate: `as`, else `count` for `count()`, else `<op>_<field>`. */
export function aggregateName(a: AggregateSpec): string {
  if (a.as) return a.as;
  return a.field === undefined ? a.op : `${a.op}_${a.field}`;
}

function checkField(at: string, v: unknown): string {
  if (typeof v !== 'string') throw new QueryError(at, `expected a field name (string), got ${typeof v}`);
  try {
    parseField(v);
  } catch (e) {
    throw new QueryError(at, (e as Error).message);
  }
  return v;
}

function checkList(at: string, v: unknown, max: number): unknown[] {
  if (!Array.isArray(v)) throw new QueryError(at, 'expected an array');
  if (v.length > max) throw new QueryError(at, `at most ${max} entries, got ${v.length}`);
  return v;
}

const QUERY_KEYS: ReadonlySet<string> = new Set(['where', 'fields', 'sort', 'limit', 'groupBy', 'aggregate']);

/**
 * Checks the shape of a query and returns it normalised (sort directions filled in).
 * Throws {@link QueryError} or {@link FilterError} naming the place at fault.
 */
export function normalizeQuery(q: QuerySpec): QuerySpec {
  const out: QuerySpec = {};
  for (const [k, v] of Object.entries(q)) {
    // A misspelt key ("lmit") silently ignored answers a different query than the one meant.
    if (v !== undefined && !QUERY_KEYS.has(k))
      throw new QueryError(
        k,
        `unknown query key; a query takes ${[...QUERY_KEYS].join(', ')} (and cursor, partial, explain)`,
      );
  }
  if (q.where !== undefined && q.where !== null) {
    compileFilter(q.where); // throws FilterError naming the operator or field
    out.where = q.where;
  }
  if (q.fields !== undefined) {
    out.fields = checkList('fields', q.fields, QUERY_LIMITS.fields).map((f, i) => checkField(`fields[${i}]`, f));
    if (out.fields.length === 0)
      throw new QueryError('fields', 'must name at least one field (omit it for whole rows)');
  }
  if (q.sort !== undefined) {
    out.sort = checkList('sort', q.sort, QUERY_LIMITS.sort).map((s, i) => {
      if (!s || typeof s !== 'object') throw new QueryError(`sort[${i}]`, 'expected {field, dir}');
      const { field, dir = 'asc' } = s as Partial<SortSpec>;
      if (dir !== 'asc' && dir !== 'desc')
        throw new QueryError(`sort[${i}].dir`, `must be "asc" or "desc", got ${JSON.stringify(dir)}`);
      return { field: checkField(`sort[${i}].field`, field), dir };
    });
  }
  if (q.limit !== undefined) {
    if (!Number.isSafeInteger(q.limit) || q.limit < 0) {
      throw new QueryError('limit', `must be a whole number (0 or more), got ${JSON.stringify(q.limit)}`);
    }
    out.limit = q.limit;
  }
  if (q.groupBy !== undefined) {
    out.groupBy = checkList('groupBy', q.groupBy, QUERY_LIMITS.groupBy).map((f, i) => checkField(`groupBy[${i}]`, f));
  }
  if (q.aggregate !== undefined) {
    const names = new Set<string>(out.groupBy ?? []);
    out.aggregate = checkList('aggregate', q.aggregate, QUERY_LIMITS.aggregate).map((a, i) => {
      const at = `aggregate[${i}]`;
      if (!a || typeof a !== 'object') throw new QueryError(at, 'expected {op, field?, as?}');
      const { op, field, as } = a as Partial<AggregateSpec>;
      if (!AGGREGATE_OPS.includes(op as AggregateOp))
        throw new QueryError(`${at}.op`, `must be one of ${AGGREGATE_OPS.join(', ')}, got ${JSON.stringify(op)}`);
      if (field === undefined && op !== 'count') throw new QueryError(`${at}.field`, `${op} needs a field`);
      const spec: AggregateSpec = { op: op as AggregateOp };
      if (field !== undefined) spec.field = checkField(`${at}.field`, field);
      if (as !== undefined) spec.as = checkField(`${at}.as`, as);
      const name = aggregateName(spec);
      if (names.has(name))
        throw new QueryError(
          at,
          `duplicate output column ${JSON.stringify(name)} (a groupBy field or another aggregate has it); give this one an "as"`,
        );
      names.add(name);
      return spec;
    });
    if (out.aggregate.length === 0) throw new QueryError('aggregate', 'must list at least one aggregate');
  }
  if (out.groupBy && !out.aggregate) throw new QueryError('groupBy', 'needs aggregate (e.g. [{"op":"count"}])');
  if (out.aggregate && out.fields)
    throw new QueryError(
      'fields',
      'cannot be combined with aggregate; the output columns are the groupBy fields and the aggregates',
    );
  if (out.aggregate && out.sort) {
    const cols = new Set([...(out.groupBy ?? []), ...out.aggregate.map(aggregateName)]);
    out.sort.forEach((s, i) => {
      if (!cols.has(s.field))
        throw new QueryError(
          `sort[${i}].field`,
          `with aggregate, sort by a groupBy field or an aggregate column (${[...cols].join(', ')})`,
        );
    });
  }
  return out;
}

export { FilterError };

/**
 * A normalised query that starts after a keyset position ({@link QuerySpec.after}): one value
 * per sort key (null, a number or a string, as SQLite's `json_extract` gives them), then the
 * `_id` (a string). Only a query that pages rows (a `limit`, no aggregate) takes one.
 * @throws {@link QueryError} at `cursor`.
 */
export function withAfter(q: QuerySpec, after: unknown): QuerySpec {
  if (q.aggregate || q.limit === undefined)
    throw new QueryError(
      'cursor',
      'a cursor pages rows: send it with the same query, which has a limit and no aggregate',
    );
  const keys = q.sort?.length ?? 0;
  const ok =
    Array.isArray(after) &&
    after.length === keys + 1 &&
    typeof after[keys] === 'string' &&
    after.every((v) => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)));
  if (!ok) throw new QueryError('cursor', `does not fit this query's sort (${keys} keys and _id)`);
  return { ...q, after: after as SqlValue[] };
}
