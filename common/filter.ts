/**
 * The `where` language: MongoDB-style operators compiled to one SQLite boolean
 * expression over a table `(_id TEXT PRIMARY KEY, chunk TEXT, doc TEXT)`, plus a plain
 * JavaScript evaluator with the same semantics. Both run off one validated tree, so
 * they accept and reject exactly the same filters. See docs/filter.md.
 */

/** A filter (or field name) that breaks the rules; `path` names the place, e.g. `where.age.$gt`. */
export class FilterError extends Error {
  override readonly name = 'FilterError';
  constructor(
    /** Where in the filter the problem is (`where.age.$gt`, `where["a..b"]`). */
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** A compiled filter: a boolean SQL expression and its bound parameters, in order. */
export interface CompiledFilter {
  sql: string;
  params: unknown[];
  /** Some term was written for an index (see `indexed` of {@link compileFilter}). */
  usesIndex?: boolean;
}

type Scalar = string | number | boolean | null;
type CmpOp = '=' | '>' | '>=' | '<' | '<=';
interface Field {
  segs: string[];
  path: string;
}
type Node =
  | { k: 'all' }
  | { k: 'and' | 'or'; items: Node[] }
  | { k: 'not'; item: Node }
  | { k: 'cmp'; f: Field; op: CmpOp; v: Scalar }
  | { k: 'in'; f: Field; vs: Scalar[] }
  | { k: 'exists'; f: Field; v: boolean };

/** The limits a filter must stay within (documented in docs/filter.md). */
const LIMITS = { fieldLength: 256, depth: 32, operators: 1000, inValues: 10_000 } as const;
const RANGE_OPS: Record<string, CmpOp> = { $gt: '>', $gte: '>=', $lt: '<', $lte: '<=' };
const FIELD_OPS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$not'];
const LOGICAL_OPS = ['$and', '$or', '$not'];
const CONTROL = /[\u0000-\u001f\u007f]/;

function show(s: string): string {
  return JSON.stringify(s.length > 80 ? s.slice(0, 80) + '…' : s);
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return typeof v;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

function checkField(field: unknown, label: string, path: string): string[] {
  const fail = (rule: string): never => {
    throw new FilterError(path, `${label} ${rule}`);
  };
  if (typeof field !== 'string') return fail(`must be a string, got ${kindOf(field)}`);
  if (field === '') return fail('is empty');
  if (field.length > LIMITS.fieldLength)
    return fail(`is ${field.length} characters long; at most ${LIMITS.fieldLength}`);
  const segs = field.split('.');
  for (const s of segs) {
    if (s === '') fail('has an empty segment; separate nested names with single dots, like "a.b"');
    const c = CONTROL.exec(s);
    if (c) fail(`contains the control character U+${c[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`);
    if (s.startsWith('$')) fail(`has a segment starting with "$" (${show(s)}); "$" is reserved for operators`);
  }
  return segs;
}

/**
 * Validates a user field reference (`"a"`, `"a.b.c"`, `"first name"`) and returns its
 * segments. Rules: non-empty, at most 256 characters, split on "."; every segment is
 * non-empty, has no control characters (U+0000–U+001F, U+007F) and does not start with "$".
 * @throws {@link FilterError} naming the field and the rule it breaks.
 */
export function parseField(field: string): string[] {
  const shown = typeof field === 'string' ? show(field) : String(field);
  return checkField(field, `field name ${shown}`, shown);
}

function pathOf(segs: string[]): string {
  return '$' + segs.map((s) => `."${s.replace(/[\\"]/g, (c) => '\\' + c)}"`).join('');
}

/**
 * The SQLite JSON path for a field: `jsonPath("a b.c") === '$."a b"."c"'`, with `"` and
 * `\` in names escaped as `\"` and `\\`. Always pass it as a bound parameter.
 * @throws {@link FilterError} if the field breaks the {@link parseField} rules.
 */
export function jsonPath(field: string): string {
  return pathOf(parseField(field));
}

// ---------------------------------------------------------------------------
// Parsing: unknown JSON → validated tree

function fieldAt(at: string, name: string): string {
  return /^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(name) ? `${at}.${name}` : `${at}[${show(name)}]`;
}

function allOf(items: Node[]): Node {
  return items.length === 0 ? { k: 'all' } : items.length === 1 ? items[0] : { k: 'and', items };
}

class Parser {
  private ops = 0;

  /** Counts one operator and checks the nesting depth it would open. */
  private count(at: string, depth = 0): void {
    if (++this.ops > LIMITS.operators) {
      throw new FilterError(
        at,
        `filter too complex: more than ${LIMITS.operators} operators (at ${at}); split the request`,
      );
    }
    if (depth > LIMITS.depth) {
      throw new FilterError(at, `filter too complex: $and/$or/$not nested more than ${LIMITS.depth} deep at ${at}`);
    }
  }

  filter(x: unknown, at: string, depth: number): Node {
    if (!isPlainObject(x)) {
      throw new FilterError(at, `${at} must be an object like {"age": {"$gt": 5}}, got ${kindOf(x)}`);
    }
    const items: Node[] = [];
    for (const [key, v] of Object.entries(x)) {
      if (!key.startsWith('$')) {
        const fat = fieldAt(at, key);
        const segs = checkField(key, `field name at ${fat}`, fat);
        items.push(this.condition({ segs, path: pathOf(segs) }, v, fat, depth));
        continue;
      }
      const oat = `${at}.${key}`;
      if (key === '$not') {
        this.count(oat, depth + 1);
        items.push({ k: 'not', item: this.filter(v, oat, depth + 1) });
      } else if (key === '$and' || key === '$or') {
        this.count(oat, depth + 1);
        if (!Array.isArray(v) || v.length === 0) {
          throw new FilterError(
            oat,
            `${key} at ${at} needs a non-empty array of filters, got ${Array.isArray(v) ? 'an empty array' : kindOf(v)}`,
          );
        }
        items.push({
          k: key === '$and' ? 'and' : 'or',
          items: v.map((s, i) => this.filter(s, `${oat}[${i}]`, depth + 1)),
        });
      } else {
        throw new FilterError(
          oat,
          `unknown operator ${show(key)} at ${at} (supported here: ${LOGICAL_OPS.join(', ')}; field operators go inside a field, like {"age": {"$gt": 5}})`,
        );
      }
    }
    return allOf(items);
  }

  private condition(f: Field, v: unknown, at: string, depth: number): Node {
    if (Array.isArray(v)) {
      throw new FilterError(at, `${at}: an array is not a value; to match any of several values use {"$in": [...]}`);
    }
    if (!isPlainObject(v)) {
      this.count(at);
      return this.cmp(f, '=', v, at, '$eq');
    }
    return this.operators(f, v, at, depth);
  }

  private operators(f: Field, obj: Record<string, unknown>, at: string, depth: number): Node {
    const keys = Object.keys(obj);
    if (keys.length === 0 || !keys.every((k) => k.startsWith('$'))) {
      throw new FilterError(
        at,
        `${at}: equality on objects is not supported; use dotted paths like "a.b" or an operator object like {"$gt": 5}`,
      );
    }
    return allOf(keys.map((op) => this.operator(f, op, obj[op], at, depth)));
  }

  private operator(f: Field, op: string, arg: unknown, at: string, depth: number): Node {
    const oat = `${at}.${op}`;
    this.count(oat, op === '$not' ? depth + 1 : depth);
    switch (op) {
      case '$eq':
        return this.cmp(f, '=', arg, oat, op, at);
      case '$ne':
        return { k: 'not', item: this.cmp(f, '=', arg, oat, op, at) };
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte':
        if (typeof arg !== 'string' && !(typeof arg === 'number' && Number.isFinite(arg))) {
          throw new FilterError(oat, `${op} at ${at} needs a number or string, got ${kindOf(arg)}`);
        }
        return { k: 'cmp', f, op: RANGE_OPS[op], v: arg };
      case '$in':
      case '$nin': {
        if (!Array.isArray(arg)) throw new FilterError(oat, `${op} at ${at} needs an array, got ${kindOf(arg)}`);
        if (arg.length > LIMITS.inValues) {
          throw new FilterError(oat, `${op} at ${at} has ${arg.length} values; at most ${LIMITS.inValues}`);
        }
        arg.forEach((x, i) => {
          if (!isScalar(x)) {
            throw new FilterError(
              `${oat}[${i}]`,
              `${op} at ${at} needs an array of strings, numbers, booleans or null; got ${kindOf(x)} at item ${i}`,
            );
          }
        });
        const node: Node = { k: 'in', f, vs: arg as Scalar[] };
        return op === '$in' ? node : { k: 'not', item: node };
      }
      case '$exists':
        if (typeof arg !== 'boolean')
          throw new FilterError(oat, `$exists at ${at} needs true or false, got ${kindOf(arg)}`);
        return { k: 'exists', f, v: arg };
      case '$not':
        if (!isPlainObject(arg)) {
          throw new FilterError(oat, `$not at ${at} needs an operator object like {"$gt": 5}, got ${kindOf(arg)}`);
        }
        return { k: 'not', item: this.operators(f, arg, oat, depth + 1) };
      default:
        throw new FilterError(oat, `unknown operator ${show(op)} at ${at} (supported: ${FIELD_OPS.join(', ')})`);
    }
  }

  private cmp(f: Field, op: CmpOp, v: unknown, at: string, opName: string, fat = at): Node {
    if (!isScalar(v)) {
      const where = at === fat ? at : `${opName} at ${fat}`;
      throw new FilterError(at, `${where} needs a string, number, boolean or null, got ${kindOf(v)}`);
    }
    return { k: 'cmp', f, op, v };
  }
}

function parse(filter: unknown, where: string): Node {
  if (filter === undefined || filter === null) return { k: 'all' };
  return new Parser().filter(filter, where, 0);
}

// ---------------------------------------------------------------------------
// SQL. Every expression below evaluates to 0 or 1, never NULL, so NOT(...) is exact.

/** Joins as a balanced tree: a flat chain of 1000 ANDs exceeds SQLite's expression depth limit. */
function balanced(parts: string[], op: 'AND' | 'OR'): string {
  if (parts.length === 1) return parts[0];
  const mid = parts.length >> 1;
  return `(${balanced(parts.slice(0, mid), op)} ${op} ${balanced(parts.slice(mid), op)})`;
}

const NUMBER_TYPES = "('integer', 'real')";

/**
 * Compiling context: the JSON paths with a built index, and whether the node is a term of
 * the top-level AND (where a NULL is as good as false, so an index-friendly form may be
 * used; under NOT or OR every term must be exactly 0 or 1).
 */
interface SqlCtx {
  indexed?: ReadonlySet<string>;
  top: boolean;
  /** Set when a term was written for an index. */
  used?: { index: boolean };
}

function toSql(n: Node, params: unknown[], ctx: SqlCtx = { top: false }): string {
  switch (n.k) {
    case 'all':
      return '1';
    case 'and':
    case 'or': {
      const inner: SqlCtx = { ...ctx, top: ctx.top && n.k === 'and' };
      return balanced(
        n.items.map((i) => toSql(i, params, inner)),
        n.k === 'and' ? 'AND' : 'OR',
      );
    }
    case 'not':
      return `(NOT ${toSql(n.item, params, { ...ctx, top: false })})`;
    case 'exists':
      if (isId(n.f)) return n.v ? '1' : '0';
      if (ctx.top && !n.v && ctx.indexed?.has(n.f.path)) {
        // The index keys a missing field and a JSON null alike by NULL: look up the NULLs,
        // then keep the rows where the field is absent. `$exists: true` has no such form
        // (IS NOT NULL plus the nulls is an OR SQLite scans for) and rarely narrows a read.
        if (ctx.used) ctx.used.index = true;
        return `(${indexKeyExpr(n.f.path)} IS NULL AND json_type(doc, ${sqlText(n.f.path)}) IS NULL)`;
      }
      params.push(n.f.path);
      return `(json_type(doc, ?) IS ${n.v ? 'NOT NULL' : 'NULL'})`;
    case 'cmp':
      if (ctx.top && ctx.indexed?.has(n.f.path) && n.v !== null && typeof n.v !== 'boolean') {
        if (ctx.used) ctx.used.index = true;
        return indexedCmpSql(n.f, n.op, n.v, params);
      }
      return cmpSql(n.f, n.op, n.v, params);
    case 'in':
      if (
        ctx.top &&
        ctx.indexed?.has(n.f.path) &&
        n.vs.length > 0 &&
        n.vs.every((v) => typeof v === 'number' || typeof v === 'string')
      ) {
        if (ctx.used) ctx.used.index = true;
        return indexedInSql(n.f, n.vs as (number | string)[], params);
      }
      return inSql(n.f, n.vs, params);
  }
}

/**
 * A comparison on an indexed field, written so SQLite's planner can range-scan the index
 * (`json_extract(doc, '<path>') op ?`, the path as the index expression spells it); the
 * json_type term keeps booleans (stored as 1 / 0) and values of the other type out (SQLite
 * orders numbers before text, so `$gt: 5` also meets the field's text values in the index).
 * No extra type bound (`< ''`) is written: SQLite took it for the range's end instead of the
 * query's own (`$lt`), and scanned half the index. Only for terms of the top-level AND: a
 * missing field gives NULL here, not 0.
 */
function indexedCmpSql(f: Field, op: CmpOp, v: number | string, params: unknown[]): string {
  const x = indexKeyExpr(f.path);
  if (typeof v === 'number') {
    params.push(JSON.stringify(v));
    return `(${x} ${op} json_extract(?, '$') AND ${typeIs(f, NUMBER_TYPES)})`;
  }
  params.push(v);
  return `(${x} ${op} ? AND ${typeIs(f, "('text')")})`;
}

/** `$in` of numbers and strings on an indexed field: an index lookup per value. */
function indexedInSql(f: Field, vs: (number | string)[], params: unknown[]): string {
  const x = indexKeyExpr(f.path);
  const parts: string[] = [];
  const nums = vs.filter((v): v is number => typeof v === 'number');
  const strs = vs.filter((v): v is string => typeof v === 'string');
  if (nums.length) {
    params.push(JSON.stringify(nums));
    parts.push(`(${x} IN (SELECT value FROM json_each(?)) AND ${typeIs(f, NUMBER_TYPES)})`);
  }
  if (strs.length) {
    params.push(JSON.stringify(strs));
    parts.push(`(${x} IN (SELECT value FROM json_each(?)) AND ${typeIs(f, "('text')")})`);
  }
  return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
}

/**
 * The SQL expression a secondary index keys a field by, for its JSON path ({@link jsonPath}):
 * `json_extract(doc, '<path>')`, the path as a string literal (an index expression cannot
 * take a parameter; paths hold no control characters). The filter writes the same text for
 * an indexed field, which is what lets SQLite use the index.
 */
export function indexKeyExpr(path: string): string {
  return `json_extract(doc, ${sqlText(path)})`;
}

function typeIs(f: Field, types: string): string {
  return `json_type(doc, ${sqlText(f.path)}) IN ${types}`;
}

function sqlText(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function isId(f: Field): boolean {
  return f.segs.length === 1 && f.segs[0] === '_id';
}

// Number operands travel as JSON text and are parsed by SQLite's JSON reader, the same
// code that reads the stored doc: SQLite's text→double conversion is not correctly
// rounded beyond about 1e±100, so binding the exact double would miss stored 1.5e300.
function cmpSql(f: Field, op: CmpOp, v: Scalar, params: unknown[]): string {
  if (isId(f)) {
    if (typeof v !== 'string') return '0';
    params.push(v);
    return `(_id ${op} ?)`;
  }
  if (v === null || typeof v === 'boolean') {
    params.push(f.path);
    return `(IFNULL(json_type(doc, ?), 'null') = '${v === null ? 'null' : String(v)}')`;
  }
  if (typeof v === 'number') {
    params.push(f.path, f.path, JSON.stringify(v));
    return `(CASE WHEN json_type(doc, ?) IN ${NUMBER_TYPES} THEN json_extract(doc, ?) ${op} json_extract(?, '$') ELSE 0 END)`;
  }
  params.push(f.path, f.path, v);
  return `(CASE WHEN json_type(doc, ?) = 'text' THEN json_extract(doc, ?) ${op} ? ELSE 0 END)`;
}

// One subquery per type family keeps the parameter count constant however long the list.
function inSql(f: Field, vs: Scalar[], params: unknown[]): string {
  const nums = vs.filter((v): v is number => typeof v === 'number');
  const strs = vs.filter((v): v is string => typeof v === 'string');
  const types = [...new Set(vs.filter((v) => v === null || typeof v === 'boolean').map(String))];
  const parts: string[] = [];
  if (isId(f)) {
    if (strs.length) {
      params.push(JSON.stringify(strs));
      parts.push('(_id IN (SELECT value FROM json_each(?)))');
    }
  } else {
    if (nums.length) {
      params.push(f.path, f.path, JSON.stringify(nums));
      parts.push(
        `(CASE WHEN json_type(doc, ?) IN ${NUMBER_TYPES} THEN json_extract(doc, ?) IN (SELECT value FROM json_each(?)) ELSE 0 END)`,
      );
    }
    if (strs.length) {
      params.push(f.path, f.path, JSON.stringify(strs));
      parts.push(
        `(CASE WHEN json_type(doc, ?) = 'text' THEN json_extract(doc, ?) IN (SELECT value FROM json_each(?)) ELSE 0 END)`,
      );
    }
    if (types.length) {
      params.push(f.path);
      parts.push(`(IFNULL(json_type(doc, ?), 'null') IN (${types.map((t) => `'${t}'`).join(', ')}))`);
    }
  }
  return parts.length ? balanced(parts, 'OR') : '0';
}

/**
 * Compiles a filter (an already JSON-parsed value; `undefined`, `null` or `{}` match
 * everything and give sql `"1"`) into a boolean SQL expression for `WHERE (<sql>)` over
 * a dstore table. The SQL refers only to the columns `doc` and `_id`, never contains
 * user text (every name and value is in `params`) except the JSON paths of `indexed` fields,
 * written as string literals the way the index expression is ({@link indexKeyExpr}), uses
 * only anonymous `?` placeholders
 * (so it can be embedded anywhere with its params spliced in at the same position), and
 * never evaluates to NULL.
 * @param where label for error paths (default `"where"`).
 * @param indexed JSON paths ({@link jsonPath}) of fields with a built index: comparisons,
 *   `$in` and `$exists: false` on them in the top-level AND are written so SQLite can use
 *   the index.
 * @throws {@link FilterError} naming the place at fault and how to fix it.
 */
export function compileFilter(filter: unknown, where = 'where', indexed?: ReadonlySet<string>): CompiledFilter {
  const params: unknown[] = [];
  const used = { index: false };
  const sql = toSql(parse(filter, where), params, { indexed, top: true, used });
  return used.index ? { sql, params, usesIndex: true } : { sql, params };
}

// ---------------------------------------------------------------------------
// Reference evaluator

const MISSING = Symbol('missing');

function read(row: unknown, segs: string[]): unknown {
  let cur = row;
  for (const s of segs) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, s))
      return MISSING;
    cur = (cur as Record<string, unknown>)[s];
  }
  if (cur === undefined) return MISSING;
  // JSON.stringify writes NaN and ±Infinity as null, so that is what SQLite would see.
  return typeof cur === 'number' && !Number.isFinite(cur) ? null : cur;
}

/**
 * Orders strings as SQLite's BINARY collation orders their UTF-8 bytes, i.e. by code
 * point. Unlike Buffer.compare on Buffer.from(...), lone surrogates keep their code point
 * (SQLite and better-sqlite3 both store them as 3-byte sequences, not as U+FFFD).
 */
function compareText(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    i += x > 0xffff ? 2 : 1;
  }
  return Math.sign(a.length - b.length);
}

function holds(c: number, op: CmpOp): boolean {
  return op === '=' ? c === 0 : op === '>' ? c > 0 : op === '>=' ? c >= 0 : op === '<' ? c < 0 : c <= 0;
}

function cmpMatch(x: unknown, op: CmpOp, v: Scalar): boolean {
  if (v === null) return x === MISSING || x === null;
  if (typeof v === 'boolean') return x === v;
  if (typeof v === 'number') return typeof x === 'number' && holds(x < v ? -1 : x > v ? 1 : 0, op);
  return typeof x === 'string' && holds(compareText(x, v), op);
}

function evaluate(n: Node, row: Record<string, unknown>): boolean {
  switch (n.k) {
    case 'all':
      return true;
    case 'and':
      return n.items.every((i) => evaluate(i, row));
    case 'or':
      return n.items.some((i) => evaluate(i, row));
    case 'not':
      return !evaluate(n.item, row);
    case 'exists':
      return (read(row, n.f.segs) !== MISSING) === n.v;
    case 'cmp':
      return cmpMatch(read(row, n.f.segs), n.op, n.v);
    case 'in': {
      const x = read(row, n.f.segs);
      return n.vs.some((v) => cmpMatch(x, '=', v));
    }
  }
}

/**
 * Whether `row` (a JSON row as `JSON.parse` gives it) matches `filter`, with exactly the
 * semantics of {@link compileFilter}'s SQL. Throws the same {@link FilterError}s.
 */
export function matchesFilter(filter: unknown, row: Record<string, unknown>): boolean {
  return evaluate(parse(filter, 'where'), row);
}

/**
 * The fields a filter reads, as written (`"a"`, `"a.b"`), each once. Used to refuse
 * filters on columns whose stored values cannot be compared (encrypted columns).
 * @throws {@link FilterError} as {@link compileFilter} does.
 */
export function filterFields(filter: unknown, where = 'where'): string[] {
  const out = new Set<string>();
  const walk = (n: Node): void => {
    switch (n.k) {
      case 'and':
      case 'or':
        return n.items.forEach(walk);
      case 'not':
        return walk(n.item);
      case 'all':
        return;
      default:
        out.add(n.f.segs.join('.'));
    }
  };
  walk(parse(filter, where));
  return [...out];
}

/** One field a filter compares, and the values it compares it with (none for `$exists`). */
export interface FilterTerm {
  /** As written: `"a"`, `"a.b"`. */
  field: string;
  values: Scalar[];
}

/**
 * Every field a filter reads with the values it compares it with, in order of appearance
 * (a field compared in several places appears several times). Used to check a filter
 * against a table's schema.
 * @throws {@link FilterError} as {@link compileFilter} does.
 */
export function filterTerms(filter: unknown, where = 'where'): FilterTerm[] {
  const out: FilterTerm[] = [];
  const walk = (n: Node): void => {
    switch (n.k) {
      case 'and':
      case 'or':
        return n.items.forEach(walk);
      case 'not':
        return walk(n.item);
      case 'all':
        return;
      case 'cmp':
        out.push({ field: n.f.segs.join('.'), values: [n.v] });
        return;
      case 'in':
        out.push({ field: n.f.segs.join('.'), values: n.vs });
        return;
      case 'exists':
        out.push({ field: n.f.segs.join('.'), values: [] });
    }
  };
  walk(parse(filter, where));
  return out;
}

/**
 * The `_id`s a filter pins: the values of `_id` equalities and `$in`s among its top-level
 * conditions (those joined by AND), intersected; undefined when it pins none, so any row
 * may match. `_id` is always a string, so a non-string value pins nothing (no row matches).
 * @throws {@link FilterError} as {@link compileFilter} does.
 */
export function pinnedIds(filter: unknown, where = 'where'): string[] | undefined {
  let pinned: Set<string> | undefined;
  const pin = (vs: Scalar[]) => {
    const ids = new Set(vs.filter((v): v is string => typeof v === 'string'));
    pinned = pinned === undefined ? ids : new Set([...pinned].filter((id) => ids.has(id)));
  };
  const top = (n: Node): void => {
    if (n.k === 'and') n.items.forEach(top);
    else if (n.k === 'cmp' && n.op === '=' && isId(n.f)) pin([n.v]);
    else if (n.k === 'in' && isId(n.f)) pin(n.vs);
  };
  top(parse(filter, where));
  return pinned === undefined ? undefined : [...pinned];
}
