import { compileFilter, indexKeyExpr, jsonPath } from '../common/filter';
import type { FetchMode } from '../common/messages';
import type { AggregateSpec, QuerySpec } from '../common/query';

/** A FETCH turned into one SQLite statement and a way to turn its rows into reply lines. */
export interface FetchPlan {
  mode: FetchMode;
  sql: string;
  params: unknown[];
  /** Turns one result row into one FETCH_RESP line (JSON text). */
  line(row: Record<string, unknown>): string;
}

const NUMERIC = "('integer','real')";

/** JSON of chunk lists, by list: a worker reuses one list for every FETCH until its chunks change. */
const listJson = new WeakMap<readonly string[], string>();

function chunkListJson(chunks: readonly string[]): string {
  let json = listJson.get(chunks);
  if (json === undefined) {
    json = JSON.stringify(chunks);
    listJson.set(chunks, json);
  }
  return json;
}

/** SQL for one partial aggregate; avg returns two columns (sum, count). */
function aggregateSql(a: AggregateSpec, i: number, params: unknown[]): string {
  if (a.field === undefined) return `count(*) AS a${i}`;
  const p = jsonPath(a.field);
  switch (a.op) {
    case 'count':
      params.push(p);
      return `count(CASE WHEN json_type(doc, ?) <> 'null' THEN 1 END) AS a${i}`;
    case 'sum':
      params.push(p, p);
      return `sum(CASE WHEN json_type(doc, ?) IN ${NUMERIC} THEN json_extract(doc, ?) END) AS a${i}`;
    case 'avg':
      params.push(p, p, p);
      return (
        `sum(CASE WHEN json_type(doc, ?) IN ${NUMERIC} THEN json_extract(doc, ?) END) AS a${i}, ` +
        `count(CASE WHEN json_type(doc, ?) IN ${NUMERIC} THEN 1 END) AS c${i}`
      );
    case 'min':
    case 'max':
      params.push(p, p);
      return `${a.op}(CASE WHEN json_type(doc, ?) IN ('integer','real','text') THEN json_extract(doc, ?) END) AS a${i}`;
  }
}

/**
 * Plans a FETCH over one local table. `chunks` limits the read to the chunks this
 * worker answers for (undefined = all of them); `indexed`: the JSON paths of the table's
 * built indexes on this shard (filters on them are written so SQLite can use them). Rows travel as the JSON text SQLite
 * holds, so a whole-row read never parses a row.
 *
 * - mode `rows`: whole rows (`doc`) or projected objects, grouped by chunk; the row's
 *   `chunk` column lets the responder cut batches on chunk boundaries only.
 * - mode `sorted`: `[key…, _id, row]` with keys as SQLite compared them, `_id` as the
 *   tie-breaker, so the coordinator's k-way merge orders exactly as SQLite would.
 * - mode `agg`: `{"g":[group values], "a":[partials]}` per group.
 */
export function planFetch(
  ident: string,
  q: QuerySpec,
  chunks: string[] | undefined,
  indexed?: ReadonlySet<string>,
): FetchPlan {
  const params: unknown[] = [];
  const cols: string[] = [];
  const where = compileFilter(q.where, 'where', indexed);
  const conds = [`(${where.sql})`];
  const whereParams = [...where.params];
  if (chunks) {
    // With an indexed filter term, `+chunk` keeps SQLite from reading the asked chunks whole
    // through the chunk index instead of the few matching rows through the filter's index.
    conds.push(`${where.usesIndex ? '+chunk' : 'chunk'} IN (SELECT value FROM json_each(?))`);
    whereParams.push(chunkListJson(chunks));
  }

  if (q.aggregate) {
    const groups = q.groupBy ?? [];
    groups.forEach((g, i) => {
      cols.push(`doc -> ? AS g${i}`);
      params.push(jsonPath(g));
    });
    q.aggregate.forEach((a, i) => cols.push(aggregateSql(a, i, params)));
    const groupSql = groups.length ? ` GROUP BY ${groups.map((_, i) => `g${i}`).join(', ')}` : '';
    const aggs = q.aggregate;
    return {
      mode: 'agg',
      sql: `SELECT ${cols.join(', ')} FROM ${ident} WHERE ${conds.join(' AND ')}${groupSql}`,
      params: [...params, ...whereParams],
      line: (r) => {
        const g = groups.map((_, i) => (r[`g${i}`] as string | null) ?? 'null');
        const a = aggs.map((spec, i) =>
          spec.op === 'avg' ? JSON.stringify([r[`a${i}`] ?? null, r[`c${i}`]]) : JSON.stringify(r[`a${i}`] ?? null),
        );
        return `{"g":[${g.join(',')}],"a":[${a.join(',')}]}`;
      },
    };
  }

  const fields = q.fields;
  if (fields) {
    fields.forEach((f, i) => {
      cols.push(`doc -> ? AS f${i}`);
      params.push(jsonPath(f));
    });
  } else {
    cols.push('doc');
  }
  const keys = JSON.stringify;
  const rowText = fields
    ? (r: Record<string, unknown>) => {
        const parts: string[] = [];
        fields.forEach((f, i) => {
          const v = r[`f${i}`];
          // A missing field is left out of the projected row, as in MongoDB.
          if (v !== null && v !== undefined) parts.push(`${keys(f)}:${v as string}`);
        });
        return `{${parts.join(',')}}`;
      }
    : (r: Record<string, unknown>) => r.doc as string;

  const sort = q.sort ?? [];
  const limitSql = q.limit !== undefined ? ' LIMIT ?' : '';
  const limitParams = q.limit !== undefined ? [q.limit] : [];
  if (sort.length === 0) {
    cols.push('chunk');
    return {
      mode: 'rows',
      // Grouped by chunk (the chunk index gives this order without a sort step).
      // With an indexed filter term, `+chunk` keeps SQLite from scanning the chunk index to
      // save a sort: sorting the few matching rows is what the index was made for.
      sql: `SELECT ${cols.join(', ')} FROM ${ident} WHERE ${conds.join(' AND ')} ORDER BY ${where.usesIndex ? '+chunk' : 'chunk'}${limitSql}`,
      params: [...params, ...whereParams, ...limitParams],
      line: rowText,
    };
  }
  sort.forEach((s, i) => {
    const path = s.field === '_id' ? undefined : jsonPath(s.field);
    if (path === undefined) {
      cols.push(`_id AS k${i}`);
    } else if (indexed?.has(path)) {
      // An indexed sort key is written as the index spells it: SQLite then reads the leading
      // key in order from the index (sorting only ties) and stops at the limit.
      cols.push(`${indexKeyExpr(path)} AS k${i}`);
    } else {
      cols.push(`json_extract(doc, ?) AS k${i}`);
      params.push(path);
    }
  });
  cols.push('_id');
  const order = sort.map((s, i) => `k${i} ${s.dir === 'desc' ? 'DESC' : 'ASC'}`).join(', ');
  return {
    mode: 'sorted',
    sql: `SELECT ${cols.join(', ')} FROM ${ident} WHERE ${conds.join(' AND ')} ORDER BY ${order}, _id ASC${limitSql}`,
    params: [...params, ...whereParams, ...limitParams],
    line: (r) => `[${sort.map((_, i) => keys(r[`k${i}`] ?? null)).join(',')},${keys(r._id)},${rowText(r)}]`,
  };
}
