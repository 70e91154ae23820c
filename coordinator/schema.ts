import { COLUMN_TYPES, type ColumnType } from '../common/messages';
import { FilterError, filterTerms } from '../common/filter';
import { fieldNameProblem } from '../common/names';
import { aggregateName, type QuerySpec } from '../common/query';
import { badRequest } from './errors';

/** Column name → type. */
export type Schema = Record<string, ColumnType>;

const MAX_COLUMNS = 1000;

/** A schema as a table declares it: column types, and the columns stored encrypted. */
export interface TableSchema {
  schema?: Schema;
  /** Columns whose values are encrypted at the coordinator (see docs/security.md); empty when none. */
  encrypted: string[];
}

const ENCRYPTED_SUFFIX = ':encrypted';

/**
 * Reads a schema given as an object (`{"age": "integer"}`) or as text
 * (`"age:integer,name:string"`). Column names are top-level fields: no `.`, not `$…`.
 * Encrypted columns are not reported here; see {@link parseTableSchema}.
 */
export function parseSchema(input: unknown): Schema | undefined {
  return parseTableSchema(input).schema;
}

/**
 * Reads a schema as {@link parseSchema} does, plus encrypted columns: a type followed by
 * `:encrypted` (`"ssn:string:encrypted"`, or `{"ssn": "string:encrypted"}`), or in the
 * object form `{"ssn": {"type": "string", "encrypted": true}}`.
 */
export function parseTableSchema(input: unknown): TableSchema {
  if (input === undefined || input === null) return { encrypted: [] };
  let entries: [string, unknown][];
  if (typeof input === 'string') {
    entries = input
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const enc = p.endsWith(ENCRYPTED_SUFFIX);
        const q = enc ? p.slice(0, -ENCRYPTED_SUFFIX.length) : p;
        const i = q.lastIndexOf(':');
        if (i <= 0)
          throw badRequest(`schema entry ${JSON.stringify(p)} must be column:type (or column:type:encrypted)`, {
            field: 'schema',
          });
        const type = q.slice(i + 1).trim();
        return [q.slice(0, i).trim(), enc ? type + ENCRYPTED_SUFFIX : type];
      });
  } else if (typeof input === 'object' && !Array.isArray(input)) {
    entries = Object.entries(input);
  } else {
    throw badRequest('schema must be an object {"column": "type"} or a string "column:type,…"', { field: 'schema' });
  }
  if (entries.length > MAX_COLUMNS)
    throw badRequest(`schema has ${entries.length} columns; at most ${MAX_COLUMNS}`, { field: 'schema' });
  const out: Schema = {};
  const encrypted: string[] = [];
  for (const [name, spec] of entries) {
    const problem =
      fieldNameProblem(name) ??
      (name.includes('.') ? 'contains "." (a column is a top-level field; dots address nested values)' : undefined);
    if (problem) throw badRequest(`schema column ${JSON.stringify(name.slice(0, 80))} ${problem}`, { field: 'schema' });
    const { type, enc } = columnSpec(name, spec);
    if (!COLUMN_TYPES.includes(type as ColumnType)) {
      throw badRequest(
        `schema column ${JSON.stringify(name)} has type ${JSON.stringify(type)}; use one of ${COLUMN_TYPES.join(', ')}`,
        { field: 'schema' },
      );
    }
    out[name] = type as ColumnType;
    if (enc) encrypted.push(name);
  }
  if (out._id !== undefined && out._id !== 'string')
    throw badRequest('schema column "_id" must be of type string', { field: 'schema' });
  if (encrypted.includes('_id'))
    throw badRequest(
      'schema column "_id" cannot be encrypted: it is the key every replica, sort and duplicate check uses',
      { field: 'schema' },
    );
  return { schema: out, encrypted };
}

/** One column's type and encrypted flag, from `"type"`, `"type:encrypted"` or `{type, encrypted}`. */
function columnSpec(name: string, spec: unknown): { type: unknown; enc: boolean } {
  if (typeof spec === 'string' && spec.endsWith(ENCRYPTED_SUFFIX))
    return { type: spec.slice(0, -ENCRYPTED_SUFFIX.length).trim(), enc: true };
  if (spec && typeof spec === 'object' && !Array.isArray(spec)) {
    const { type, encrypted, ...rest } = spec as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0 || (encrypted !== undefined && typeof encrypted !== 'boolean')) {
      throw badRequest(
        `schema column ${JSON.stringify(name)}: write it as "type", "type:encrypted" or {"type": "string", "encrypted": true}`,
        { field: 'schema' },
      );
    }
    return { type, enc: encrypted === true };
  }
  return { type: spec, enc: false };
}

function typeOk(type: ColumnType, v: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'json':
      return true;
  }
}

/**
 * Checks one row against a schema: every field must be a column of the schema and of
 * its type (null allowed: a column may be empty). Throws a 400 naming row and field.
 */
export function checkRow(row: Record<string, unknown>, schema: Schema, rowNo: number): void {
  for (const [field, v] of Object.entries(row)) {
    if (field === '_id') continue;
    const type = Object.hasOwn(schema, field) ? schema[field] : undefined;
    if (type === undefined) {
      throw badRequest(
        `row ${rowNo}: field ${JSON.stringify(field)} is not in the table's schema (columns: ${Object.keys(schema).join(', ')})`,
        { row: rowNo, field },
      );
    }
    if (v !== null && !typeOk(type, v)) {
      throw badRequest(
        `row ${rowNo}: field ${JSON.stringify(field)} must be ${type === 'integer' ? 'an integer' : `a ${type}`}, got ${JSON.stringify(v)}`,
        {
          row: rowNo,
          field,
        },
      );
    }
  }
}

/** How CSV values become JSON values in a table without a schema: inferred, or kept as text. */
export const CSV_TYPES = ['infer', 'string'] as const;
export type CsvTypes = (typeof CSV_TYPES)[number];

/**
 * A decimal integer or float without a leading zero (`0`, `-12`, `3.25`, `2.5e-3`): "00501"
 * and "007" are codes and stay text. An exponent needs a decimal point: codes such as the
 * airport "0E0" or a part "1E5" stay text ("1.0e5" is a number).
 */
const NUMBER_TEXT = /^-?(0|[1-9]\d*)(\.\d+([eE][-+]?\d+)?)?$/;

/**
 * The JSON value of one CSV cell in a table without a schema (`infer`): numbers (integers
 * only while they are exact), `true`/`false` in any case, an empty cell as null; anything
 * else, codes with leading zeros and text with spaces around it included, stays text.
 */
export function inferCsvValue(raw: string): unknown {
  if (raw === '') return null;
  if (NUMBER_TEXT.test(raw)) {
    const n = Number(raw);
    const integer = !raw.includes('.');
    if (Number.isFinite(n) && (!integer || Number.isSafeInteger(n))) return n;
    return raw;
  }
  const b = raw.toLowerCase();
  if (b === 'true' || b === 'false') return b === 'true';
  return raw;
}

/**
 * Types one CSV record (all strings). With a schema, by the schema (an empty cell leaves
 * the field out). Without one, by {@link inferCsvValue}, or (`types: 'string'`) as text with
 * empty cells left out.
 */
export function typeCsvRecord(
  rec: Record<string, string>,
  schema: Schema | undefined,
  rowNo: number,
  types: CsvTypes = 'infer',
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, raw] of Object.entries(rec)) {
    if (!schema) {
      if (field === '_id' || types === 'string') {
        if (raw !== '') out[field] = raw;
      } else out[field] = inferCsvValue(raw);
      continue;
    }
    if (raw === '') continue;
    const type = field === '_id' ? 'string' : Object.hasOwn(schema, field) ? schema[field] : undefined;
    if (type === undefined || type === 'string') {
      out[field] = raw;
      continue;
    }
    const fail = (what: string) =>
      badRequest(`row ${rowNo}: field ${JSON.stringify(field)} must be ${what}, got ${JSON.stringify(raw)}`, {
        row: rowNo,
        field,
      });
    switch (type) {
      case 'integer': {
        if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw))) throw fail('an integer');
        out[field] = Number(raw);
        break;
      }
      case 'number': {
        const n = Number(raw);
        // Decimal notation only: Number() would also take 0x10, 0b11 and 0o17.
        if (!/^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(raw) || !Number.isFinite(n)) throw fail('a number');
        out[field] = n;
        break;
      }
      case 'boolean': {
        const b = raw.trim().toLowerCase();
        if (b !== 'true' && b !== 'false') throw fail('true or false');
        out[field] = b === 'true';
        break;
      }
      case 'json':
        try {
          out[field] = JSON.parse(raw);
        } catch {
          throw fail('JSON');
        }
        break;
    }
  }
  return out;
}

/** A value's JSON kind as a message names it. */
function kind(v: unknown): string {
  return v === null
    ? 'null'
    : typeof v === 'string'
      ? `the string ${JSON.stringify(v)}`
      : `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * With a schema, a filter may only name columns (or `_id`), address inside `json` columns
 * only, and compare each column with values of its type (or null): `{"delay": "5"}` on an
 * integer column would silently match nothing, so it is a 400 naming the field.
 */
export function checkFilter(where: unknown, schema: Schema | undefined, label = 'where'): void {
  if (!schema) return;
  let terms;
  try {
    terms = filterTerms(where, label);
  } catch (e) {
    if (e instanceof FilterError) throw badRequest(e.message, { field: e.path });
    throw e;
  }
  const columns = ['_id', ...Object.keys(schema)].join(', ');
  for (const { field, values } of terms) {
    const [col, ...rest] = field.split('.');
    const type: ColumnType | undefined =
      col === '_id' ? 'string' : Object.hasOwn(schema, col) ? schema[col] : undefined;
    if (type === undefined)
      throw badRequest(`${label}: unknown field ${JSON.stringify(field)}; the table's columns are ${columns}`, {
        field: `${label}.${field}`,
      });
    if (rest.length > 0) {
      if (type !== 'json')
        throw badRequest(
          `${label}: ${JSON.stringify(field)} addresses inside column ${JSON.stringify(col)}, which is ${type === 'integer' ? 'an integer' : `a ${type}`}, not json`,
          { field: `${label}.${field}` },
        );
      continue;
    }
    if (type === 'json') continue;
    // An integer column compares with any number (`{"$gt": 4.5}`), not only integers.
    const fits = (v: unknown) => (type === 'integer' ? typeof v === 'number' && Number.isFinite(v) : typeOk(type, v));
    const bad = values.find((v) => v !== null && !fits(v));
    if (bad !== undefined) {
      throw badRequest(
        `${label}: column ${JSON.stringify(col)} is ${type === 'integer' ? 'an integer' : `a ${type}`} column; compare it with ${type === 'string' ? 'a string' : type === 'boolean' ? 'true or false' : 'a number'}, got ${kind(bad)}`,
        {
          field: `${label}.${field}`,
        },
      );
    }
  }
}

/**
 * With a schema, every field a query names (filter, projection, sort, group, aggregate)
 * must be a column (or `_id`), and the filter's values of the column's type: a typo is a
 * 400, not an empty result.
 */
export function checkQueryFields(q: QuerySpec, schema: Schema | undefined): void {
  if (!schema) return;
  checkFilter(q.where, schema);
  const known = (f: string) => f === '_id' || Object.hasOwn(schema, f.split('.')[0]);
  const aggNames = new Set((q.aggregate ?? []).map(aggregateName));
  const check = (where: string, f: string | undefined) => {
    if (f !== undefined && !known(f)) {
      throw badRequest(
        `${where}: unknown field ${JSON.stringify(f)}; the table's columns are ${['_id', ...Object.keys(schema)].join(', ')}`,
        { field: where },
      );
    }
  };
  q.fields?.forEach((f, i) => check(`fields[${i}]`, f));
  q.groupBy?.forEach((f, i) => check(`groupBy[${i}]`, f));
  q.aggregate?.forEach((a, i) => check(`aggregate[${i}].field`, a.field));
  q.sort?.forEach((s, i) => !aggNames.has(s.field) && check(`sort[${i}].field`, s.field));
}
