import { compileFilter, indexKeyExpr, jsonPath } from '../common/filter';
import type { FetchMode } from '../common/messages';
import type { AggregateSpec, QuerySpec, SortSpec } from '../common/query';
import type { SqlValue } from '../common/sqlite-order';

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
 * - mode `sorted`: `[key…, _id]`, a tab, then the row text; keys as SQLite compared them,
 *   `_id` as the tie-breaker, so the coordinator's k-way merge orders exactly as SQLite would.
 * - mode `agg`: `{"g":[group values], "a":[partials]}` per group.
 */
export function planFetch(
  ident: string,
  q: QuerySpec,
  chunks: string[] | undefined,
  indexed?: ReadonlySet<string>,
  /** Answer whole rows as this SQL (an UPDATE's, worker/shard-store.ts updatedDoc) makes them. */
  preview?: { sql: string; params: unknown[] },
): FetchPlan {
  const params: unknown[] = [];
  const cols: string[] = [];
  const where = compileFilter(q.where, 'where', indexed);
  const conds = [`(${where.sql})`];
  const whereParams = [...where.params];
  const sort = q.sort ?? [];
  if (chunks) {
    // With an indexed filter term, `+chunk` keeps SQLite from reading the asked chunks whole
    // through the chunk index instead of the few matching rows through the filter's index;
    // likewise for a limit read in an order an index gives (`_id`, or an indexed first sort
    // key), which SQLite reads in order and stops at the limit.
    const ordered =
      q.limit !== undefined &&
      !q.aggregate &&
      (sort.length === 0 || sort[0].field === '_id' || indexed?.has(jsonPath(sort[0].field)) === true);
    conds.push(`${where.usesIndex || ordered ? '+chunk' : 'chunk'} IN (SELECT value FROM json_each(?))`);
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
  } else if (preview) {
    cols.push(`${preview.sql} AS doc`);
    params.push(...preview.params);
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

  const limitSql = q.limit !== undefined ? ' LIMIT ?' : '';
  const limitParams = q.limit !== undefined ? [q.limit] : [];
  if (sort.length === 0 && q.limit === undefined) {
    cols.push('chunk');
    return {
      mode: 'rows',
      // Grouped by chunk (the chunk index gives this order without a sort step).
      // With an indexed filter term, `+chunk` keeps SQLite from scanning the chunk index to
      // save a sort: sorting the few matching rows is what the index was made for.
      sql: `SELECT ${cols.join(', ')} FROM ${ident} WHERE ${conds.join(' AND ')} ORDER BY ${where.usesIndex ? '+chunk' : 'chunk'}`,
      params: [...params, ...whereParams],
      line: rowText,
    };
  }
  // A limit without a sort still reads in a total order (`_id`), so that a page can end with
  // a cursor and the next start after it.
  const keyExprs = sort.map((s) => {
    const path = s.field === '_id' ? undefined : jsonPath(s.field);
    if (path === undefined) return { sql: '_id', params: [] };
    // An indexed sort key is written as the index spells it: SQLite then reads the leading
    // key in order from the index (sorting only ties) and stops at the limit.
    if (indexed?.has(path)) return { sql: indexKeyExpr(path), params: [] };
    return { sql: 'json_extract(doc, ?)', params: [path] };
  });
  keyExprs.forEach((k, i) => {
    cols.push(`${k.sql} AS k${i}`);
    params.push(...k.params);
  });
  cols.push('_id');
  const order = `ORDER BY ${sort.map((s, i) => `k${i} ${s.dir === 'desc' ? 'DESC' : 'ASC'}, `).join('')}_id ASC`;
  // `[key…, _id]`, a tab, then the row as stored: the merge parses only the keys (JSON text
  // holds no raw tab, so the first one ends them) and hands the row on as it is.
  const line = (r: Record<string, unknown>) =>
    `[${sort.map((_, i) => keys(r[`k${i}`] ?? null) + ',').join('')}${keys(r._id)}]\t${rowText(r)}`;
  const select = (extra: Sql) =>
    `SELECT ${cols.join(', ')} FROM ${ident} WHERE ${[...conds, ...(extra.sql ? [extra.sql] : [])].join(' AND ')}`;
  const parts = q.after ? keysetSql(keyExprs, sort, q.after) : [{ sql: '', params: [] }];
  if (parts.length === 1)
    return {
      mode: 'sorted',
      sql: `${select(parts[0])} ${order}${limitSql}`,
      params: [...params, ...whereParams, ...parts[0].params, ...limitParams],
      line,
    };
  // Each part reads its own range in order up to the limit; the union is sorted again
  // (at most parts × limit rows).
  return {
    mode: 'sorted',
    sql: `SELECT * FROM (${parts.map((p) => `SELECT * FROM (${select(p)} ${order}${limitSql})`).join(' UNION ALL ')}) ${order}${limitSql}`,
    params: [...parts.flatMap((p) => [...params, ...whereParams, ...p.params, ...limitParams]), ...limitParams],
    line,
  };
}

type Sql = { sql: string; params: unknown[] };

/**
 * `(key…, _id) > after` in the order `ORDER BY key… , _id ASC` gives (each key ascending or
 * descending, NULL first when ascending as in SQLite), for a page that starts after the row
 * whose keys and `_id` `after` holds, as one or two conditions whose rows, each read in that
 * order, together make the page. The comparisons are SQLite's own, on the same expressions
 * the sort reads, so the page boundary agrees with the order exactly. The leading key also
 * gets a plain bound (`k >= v`; descending `k <= v`, with the NULLs that sort after every
 * value as a second part) that SQLite can seek an index or the `_id` key to: page 1,000 then
 * starts where it starts instead of reading the pages before it.
 */
export function keysetSql(keyExprs: Sql[], sort: readonly SortSpec[], after: readonly SqlValue[]): Sql[] {
  const params: unknown[] = [];
  const n = sort.length;
  const eq = (k: Sql, v: SqlValue) => {
    params.push(...k.params);
    if (v === null) return `${k.sql} IS NULL`;
    params.push(v);
    return `${k.sql} = ?`;
  };
  const past = (k: Sql, desc: boolean, v: SqlValue) => {
    if (!desc) {
      params.push(...k.params);
      if (v === null) return `${k.sql} IS NOT NULL`;
      params.push(v);
      return `${k.sql} > ?`;
    }
    if (v === null) return '0';
    params.push(...k.params, v, ...k.params);
    return `(${k.sql} < ? OR ${k.sql} IS NULL)`;
  };
  const alts: string[] = [];
  for (let i = 0; i <= n; i++) {
    const prefix = Array.from({ length: i }, (_, j) => eq(keyExprs[j], after[j]));
    const last = i < n ? past(keyExprs[i], sort[i].dir === 'desc', after[i]) : (params.push(after[n]), '_id > ?');
    alts.push(`(${[...prefix, last].join(' AND ')})`);
  }
  const keyset = `(${alts.join(' OR ')})`;
  if (n === 0) return [{ sql: `(_id >= ? AND ${keyset})`, params: [after[0], ...params] }];
  const k = keyExprs[0];
  if (after[0] === null) return [{ sql: keyset, params }];
  if (sort[0].dir === 'asc')
    return [{ sql: `(${k.sql} >= ? AND ${keyset})`, params: [...k.params, after[0], ...params] }];
  return [
    { sql: `(${k.sql} <= ? AND ${keyset})`, params: [...k.params, after[0], ...params] },
    { sql: `${k.sql} IS NULL`, params: [...k.params] },
  ];
}
