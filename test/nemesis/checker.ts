/**
 * Checks one answer of the store against what the model says each row may have shown
 * ({@link Possible}). Pure: a list of problems, empty when the answer is allowed.
 *
 * A complete answer must hold every row that is present (and matching) in every possible
 * state, once, with a value one of those states has; never a row that is absent in every
 * state. An answer that says it is not exact (a `_partial` or `_error` line) is excused
 * for rows it lacks, not for rows it holds: those are checked the same way.
 */
import { canonical } from '../support/data';
import { matches, type Filter } from './filter';
import { valueKey, type Doc, type Possible, type Value } from './model';

/** What a problem is. Every kind but `status` and `settle` is a row the store got wrong. */
export type ProblemKind =
  | 'lost' // a row every state holds is missing from an answer that claims to be complete
  | 'duplicate' // a row (or a group) appears twice
  | 'wrong' // a value no state has (stale, altered, or not matching the filter)
  | 'resurrected' // a row no state holds (deleted, never stored, or from a rejected write)
  | 'order' // rows out of the requested order, or more than the limit
  | 'count' // a count outside what the states allow
  | 'unstable' // two reads of a quiesced cluster differ
  | 'replica' // replicas of a chunk differ, or a listed replica lacks it
  | 'status' // an answer no request of this shape should get (4xx, 500 on a healthy cluster)
  | 'crash' // a process exited that no fault killed
  | 'torn' // some rows of a POST whose answer was lost are stored, others not
  | 'settle'; // the cluster did not quiesce

/** One thing wrong with an answer. */
export interface Problem {
  kind: ProblemKind;
  id?: string;
  detail: string;
}

/** One sort key of a read; `_id` last makes the order total. */
export interface SortKey {
  field: string;
  dir: 'asc' | 'desc';
}

/** The reads the nemesis makes, as the checker needs to know them. */
export type ReadShape =
  | { kind: 'rows'; where: Filter }
  | { kind: 'lookup'; where: Filter }
  | { kind: 'sorted'; where: Filter; sort: SortKey[]; limit: number }
  | { kind: 'count'; where: Filter }
  | { kind: 'group'; where: Filter; by: string }
  /** `GET /tables/:t/records/:id`: one record, or a 404 when there is none. */
  | { kind: 'get'; id: string };

/** The body of `POST /tables/:t/query` for a read (a `get` is the same read as a lookup). */
export function queryBody(shape: ReadShape, partial: boolean): Record<string, unknown> {
  if (shape.kind === 'get') return queryBody(asLookup(shape), partial);
  const q: Record<string, unknown> = { where: shape.where };
  if (shape.kind === 'sorted') Object.assign(q, { sort: shape.sort, limit: shape.limit });
  if (shape.kind === 'count') q.aggregate = [{ op: 'count' }];
  if (shape.kind === 'group') Object.assign(q, { groupBy: [shape.by], aggregate: [{ op: 'count' }] });
  if (partial) q.partial = true;
  return q;
}

const show = (v: unknown, max = 160): string => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
};

function showPossible(vals: ReadonlyMap<string, Value> | undefined): string {
  if (!vals) return 'never written';
  return [...vals.keys()].map((k) => (k === 'null' ? 'absent' : k)).join(' | ');
}

/** Present in every state, and matching `where` in every one. */
function required(vals: ReadonlyMap<string, Value> | undefined, where: Filter): boolean {
  if (!vals || vals.size === 0) return false;
  for (const v of vals.values()) if (v === null || !matches(where, v)) return false;
  return true;
}

/** The present, matching values a row may have. */
function candidates(vals: ReadonlyMap<string, Value> | undefined, where: Filter): Doc[] {
  if (!vals) return [];
  return [...vals.values()].filter((v): v is Doc => v !== null && matches(where, v));
}

/** SQLite's order of the values `json_extract` yields: missing/null < numbers < text (bytes). */
function compareValue(a: unknown, b: unknown): number {
  const rank = (v: unknown) =>
    v === undefined || v === null ? 0 : typeof v === 'number' || typeof v === 'boolean' ? 1 : 2;
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) return Number(a) - Number(b);
  if (ra === 2) return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
  return 0;
}

/** Compares two rows by a sort (negative: `a` first). */
export function compareRows(a: Doc, b: Doc, sort: readonly SortKey[]): number {
  for (const k of sort) {
    const c = compareValue(a[k.field], b[k.field]);
    if (c !== 0) return k.dir === 'desc' ? -c : c;
  }
  return 0;
}

/**
 * Checks the rows of a row-returning answer (`rows`, `lookup`, `sorted`): no duplicate, every
 * row a value its states allow; when `complete`, no required row missing (for `sorted`,
 * none that sorts before the last row returned, or any when fewer than `limit` came back).
 */
export function checkRows(
  possible: Possible,
  shape: Exclude<ReadShape, { kind: 'get' }>,
  got: readonly Doc[],
  complete: boolean,
): Problem[] {
  const problems: Problem[] = [];
  const where = shape.where;
  const seen = new Set<string>();
  for (const row of got) {
    const id = row._id;
    if (seen.has(id)) {
      problems.push({ kind: 'duplicate', id, detail: `row ${id} appears more than once` });
      continue;
    }
    seen.add(id);
    const vals = possible.get(id);
    if (vals?.has(valueKey(row)) && matches(where, row)) continue;
    const allowed = candidates(vals, where);
    if (allowed.length === 0 && (!vals || [...vals.values()].every((v) => v === null))) {
      problems.push({
        kind: 'resurrected',
        id,
        detail: `row ${id} is returned but no state holds it (${showPossible(vals)}): ${show(canonical(row))}`,
      });
    } else {
      const why = matches(where, row)
        ? 'a value no state has'
        : `a value that does not match the filter ${show(where)}`;
      problems.push({
        kind: 'wrong',
        id,
        detail: `row ${id} has ${why}: got ${show(canonical(row))}; possible: ${show(showPossible(vals), 400)}`,
      });
    }
  }
  if (shape.kind === 'sorted') {
    if (got.length > shape.limit)
      problems.push({ kind: 'order', detail: `${got.length} rows returned for limit ${shape.limit}` });
    for (let i = 1; i < got.length; i++) {
      if (compareRows(got[i - 1], got[i], shape.sort) > 0) {
        problems.push({
          kind: 'order',
          id: got[i]._id,
          detail: `row ${got[i]._id} comes after ${got[i - 1]._id} but sorts before it by ${show(shape.sort)}`,
        });
        break;
      }
    }
  }
  if (!complete) return problems;
  const last = shape.kind === 'sorted' && got.length >= shape.limit && got.length > 0 ? got[got.length - 1] : undefined;
  for (const [id, vals] of possible) {
    if (seen.has(id) || !required(vals, where)) continue;
    if (shape.kind === 'sorted' && shape.limit === 0) continue;
    if (last && shape.kind === 'sorted' && ![...vals.values()].every((v) => compareRows(v!, last, shape.sort) < 0))
      continue;
    const scope = last ? ` (it sorts before the last row returned, ${last._id})` : '';
    problems.push({
      kind: 'lost',
      id,
      detail: `row ${id} is missing from a complete answer of ${got.length} rows${scope}; possible: ${show(showPossible(vals), 400)}`,
    });
  }
  return problems;
}

/** The lowest and highest count of rows matching `where` the states allow, optionally per value of field `by`. */
export function countBounds(possible: Possible, where: Filter, by?: string): Map<string, { lo: number; hi: number }> {
  const out = new Map<string, { lo: number; hi: number }>();
  const at = (k: string) => {
    let b = out.get(k);
    if (!b) out.set(k, (b = { lo: 0, hi: 0 }));
    return b;
  };
  const keyOf = (d: Doc) => (by === undefined ? '*' : JSON.stringify(d[by] ?? null));
  if (by === undefined) at('*');
  for (const vals of possible.values()) {
    const docs = candidates(vals, where);
    const groups = new Set(docs.map(keyOf));
    for (const g of groups) at(g).hi++;
    if (required(vals, where) && groups.size === 1) at([...groups][0]).lo++;
  }
  return out;
}

/** Checks a `count` answer (one line `{count}`) or a `group` answer (one line `{<by>, count}` per group). */
export function checkCounts(
  possible: Possible,
  shape: Exclude<ReadShape, { kind: 'get' }>,
  lines: readonly Record<string, unknown>[],
  complete: boolean,
): Problem[] {
  const by = shape.kind === 'group' ? shape.by : undefined;
  const bounds = countBounds(possible, shape.where, by);
  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    const key = by === undefined ? '*' : JSON.stringify(line[by] ?? null);
    const n = line.count;
    const label = by === undefined ? 'count' : `count of ${by}=${key}`;
    if (seen.has(key)) {
      problems.push({ kind: 'duplicate', detail: `${label} appears on more than one line` });
      continue;
    }
    seen.add(key);
    const b = bounds.get(key) ?? { lo: 0, hi: 0 };
    if (typeof n !== 'number' || n > b.hi || (complete && n < b.lo)) {
      problems.push({
        kind: 'count',
        detail: `${label} is ${show(n)}; the states allow ${complete ? b.lo : 0}..${b.hi} (where ${show(shape.where)})`,
      });
    }
  }
  if (complete) {
    for (const [key, b] of bounds) {
      if (seen.has(key) || b.lo === 0) continue;
      problems.push({
        kind: 'lost',
        detail: `${by === undefined ? 'the count' : `group ${by}=${key}`} is missing from a complete answer; at least ${b.lo} rows hold it`,
      });
    }
  }
  return problems;
}

/** A `get` as the lookup by `_id` it is. */
function asLookup(shape: ReadShape): Exclude<ReadShape, { kind: 'get' }> {
  return shape.kind === 'get' ? { kind: 'lookup', where: { _id: shape.id } } : shape;
}

/**
 * Checks any read answer: rows for `rows`/`lookup`/`sorted`/`get` (a `get` answered 404 is
 * an empty answer), counts for `count`/`group`.
 */
export function checkRead(
  possible: Possible,
  shape: ReadShape,
  lines: readonly Record<string, unknown>[],
  complete: boolean,
): Problem[] {
  const s = asLookup(shape);
  if (s.kind === 'count' || s.kind === 'group') return checkCounts(possible, s, lines, complete);
  return checkRows(possible, s, lines as Doc[], complete);
}

/**
 * Checks the count an UPDATE or DELETE answered: never more than the rows that may match;
 * when `exact` (no worker left the change pending), never fewer than those that must.
 * `possible` should leave out the worlds in which the write itself already applied.
 */
export function checkMutationCount(
  possible: Possible,
  where: Filter,
  count: unknown,
  exact: boolean,
  what: string,
): Problem[] {
  const b = countBounds(possible, where).get('*')!;
  if (typeof count === 'number' && count <= b.hi && (!exact || count >= b.lo)) return [];
  return [
    {
      kind: 'count',
      detail: `${what} answered ${show(count)} rows; the states allow ${exact ? b.lo : 0}..${b.hi} (where ${show(where)})`,
    },
  ];
}

/** Two complete reads of a quiesced cluster must be equal, row for row. */
export function checkStable(first: readonly Doc[], second: readonly Doc[]): Problem[] {
  const a = new Map(first.map((r) => [r._id, canonical(r)]));
  const b = new Map(second.map((r) => [r._id, canonical(r)]));
  const problems: Problem[] = [];
  for (const [id, v] of a) {
    if (!b.has(id))
      problems.push({ kind: 'unstable', id, detail: `row ${id} was in the first settled read, not in the second` });
    else if (b.get(id) !== v)
      problems.push({
        kind: 'unstable',
        id,
        detail: `row ${id} changed between two settled reads: ${show(v)} → ${show(b.get(id))}`,
      });
  }
  for (const id of b.keys())
    if (!a.has(id))
      problems.push({ kind: 'unstable', id, detail: `row ${id} appeared in the second settled read only` });
  return problems;
}
