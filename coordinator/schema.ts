import { COLUMN_TYPES, type ColumnType } from '../common/messages';
import { aggregateName, type QuerySpec } from '../common/query';
import { badRequest } from './errors';

/** Column name → type. */
export type Schema = Record<string, ColumnType>;

const MAX_COLUMNS = 1000;

/**
 * Reads a schema given as an object (`{"age": "integer"}`) or as text
 * (`"age:integer,name:string"`). Column names are top-level fields: no `.`, not `$…`.
 */
export function parseSchema(input: unknown): Schema | undefined {
  if (input === undefined || input === null) return undefined;
  let entries: [string, unknown][];
  if (typeof input === 'string') {
    entries = input
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const i = p.lastIndexOf(':');
        if (i <= 0) throw badRequest(`schema entry ${JSON.stringify(p)} must be column:type`, { field: 'schema' });
        return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
      });
  } else if (typeof input === 'object' && !Array.isArray(input)) {
    entries = Object.entries(input);
  } else {
    throw badRequest('schema must be an object {"column": "type"} or a string "column:type,…"', { field: 'schema' });
  }
  if (entries.length > MAX_COLUMNS) throw badRequest(`schema has ${entries.length} columns; at most ${MAX_COLUMNS}`, { field: 'schema' });
  const out: Schema = {};
  for (const [name, type] of entries) {
    if (!name || name.length > 256 || name.includes('.') || name.startsWith('$') || /[\u0000-\u001f\u007f]/.test(name)) {
      throw badRequest(`schema column ${JSON.stringify(name)} must be 1-256 characters without ".", control characters or a leading "$"`, { field: 'schema' });
    }
    if (!COLUMN_TYPES.includes(type as ColumnType)) {
      throw badRequest(`schema column ${JSON.stringify(name)} has type ${JSON.stringify(type)}; use one of ${COLUMN_TYPES.join(', ')}`, { field: 'schema' });
    }
    out[name] = type as ColumnType;
  }
  if (out._id !== undefined && out._id !== 'string') throw badRequest('schema column "_id" must be of type string', { field: 'schema' });
  return out;
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
      throw badRequest(`row ${rowNo}: field ${JSON.stringify(field)} is not in the table's schema (columns: ${Object.keys(schema).join(', ')})`, { row: rowNo, field });
    }
    if (v !== null && !typeOk(type, v)) {
      throw badRequest(`row ${rowNo}: field ${JSON.stringify(field)} must be ${type === 'integer' ? 'an integer' : `a ${type}`}, got ${JSON.stringify(v)}`, {
        row: rowNo,
        field,
      });
    }
  }
}

/**
 * Types one CSV record (all strings) by the schema; without a schema values stay
 * strings. An empty cell leaves the field out.
 */
export function typeCsvRecord(rec: Record<string, string>, schema: Schema | undefined, rowNo: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, raw] of Object.entries(rec)) {
    if (raw === '') continue;
    const type = field === '_id' ? 'string' : schema && Object.hasOwn(schema, field) ? schema[field] : undefined;
    if (!schema || type === undefined || type === 'string') {
      out[field] = raw;
      continue;
    }
    const fail = (what: string) => badRequest(`row ${rowNo}: field ${JSON.stringify(field)} must be ${what}, got ${JSON.stringify(raw)}`, { row: rowNo, field });
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

/**
 * With a schema, every field a query names (projection, sort, group, aggregate) must
 * be a column (or `_id`): a typo is a 400, not an empty result.
 */
export function checkQueryFields(q: QuerySpec, schema: Schema | undefined): void {
  if (!schema) return;
  const known = (f: string) => f === '_id' || Object.hasOwn(schema, f.split('.')[0]);
  const aggNames = new Set((q.aggregate ?? []).map(aggregateName));
  const check = (where: string, f: string | undefined) => {
    if (f !== undefined && !known(f)) {
      throw badRequest(`${where}: unknown field ${JSON.stringify(f)}; the table's columns are ${['_id', ...Object.keys(schema)].join(', ')}`, { field: where });
    }
  };
  q.fields?.forEach((f, i) => check(`fields[${i}]`, f));
  q.groupBy?.forEach((f, i) => check(`groupBy[${i}]`, f));
  q.aggregate?.forEach((a, i) => check(`aggregate[${i}].field`, a.field));
  q.sort?.forEach((s, i) => !aggNames.has(s.field) && check(`sort[${i}].field`, s.field));
}
