import type { CoordinatorOptions } from '../common/config';
import { fieldNameProblem } from '../common/names';
import { ApiError, badRequest } from './errors';

/**
 * The per-request limits of the API (each a setting in common/config.ts). A breach is a
 * 4xx whose JSON body says `error: "limit_exceeded"`, names the setting in `limit`, and,
 * for records, the `row` and `field` at fault.
 */
export type Limits = Pick<
  CoordinatorOptions,
  'maxRowsPerRequest' | 'maxRecordBytes' | 'maxFields' | 'maxDepth' | 'maxResultRows' | 'queryTimeoutMs'
>;

/** A limit was exceeded: `status` 400, 413 or 504, `limit` the setting's variable. */
export function limitExceeded(
  status: number,
  limit: string,
  message: string,
  details: Record<string, unknown> = {},
): ApiError {
  return new ApiError(status, 'limit_exceeded', message, { limit, ...details });
}

/** Depth of nested objects/arrays in `v` (a scalar is 0), stopping once past `max`. */
function depthOf(v: unknown, max: number): number {
  // Most nested values are one flat object or array: no stack needed for those.
  if (max >= 1 && v !== null && typeof v === 'object') {
    let flat = true;
    for (const c of Array.isArray(v) ? v : Object.values(v)) {
      if (c !== null && typeof c === 'object') {
        flat = false;
        break;
      }
    }
    if (flat) return 1;
  }
  let deepest = 0;
  // Iterative: a hostile value must not be able to overflow the stack.
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    const here = d + 1;
    if (here > deepest) deepest = here;
    if (deepest > max) return deepest;
    for (const c of Array.isArray(x) ? x : Object.values(x))
      if (c !== null && typeof c === 'object') stack.push([c, here]);
  }
  return deepest;
}

function rowPrefix(row: number | undefined): string {
  return row === undefined ? '' : `row ${row}: `;
}

/**
 * Checks the shape of one record (or an update's `set`): field count, field names and
 * the nesting depth of each value. `row` is its 1-based position, if it is a record.
 */
export function checkRecordShape(
  rec: Record<string, unknown>,
  limits: Pick<Limits, 'maxFields' | 'maxDepth'>,
  row?: number,
): void {
  const at = (field?: string) => ({ ...(row === undefined ? {} : { row }), ...(field === undefined ? {} : { field }) });
  const fields = Object.keys(rec);
  if (fields.length > limits.maxFields) {
    throw limitExceeded(
      400,
      'DSTORE_MAX_FIELDS',
      `${rowPrefix(row)}the record has ${fields.length} fields; the limit is DSTORE_MAX_FIELDS (${limits.maxFields})`,
      at(),
    );
  }
  for (const f of fields) {
    // Rows of one table share their field names: each is checked once, not once per row.
    if (f !== '_id' && !GOOD_NAMES.has(f)) {
      const problem = fieldNameProblem(f);
      if (problem)
        throw badRequest(
          `${rowPrefix(row)}field name ${JSON.stringify(f.slice(0, 80))} ${problem}`,
          at(f.slice(0, 256)),
        );
      remember(f);
    }
    const v = rec[f];
    if (v !== null && typeof v === 'object') {
      const d = depthOf(v, limits.maxDepth);
      if (d > limits.maxDepth) {
        throw limitExceeded(
          400,
          'DSTORE_MAX_DEPTH',
          `${rowPrefix(row)}field ${JSON.stringify(f)} nests objects/arrays more than DSTORE_MAX_DEPTH (${limits.maxDepth}) deep`,
          at(f),
        );
      }
    }
  }
}

/** Field names that passed {@link fieldNameProblem} (bounded: cleared when full). */
const GOOD_NAMES = new Set<string>();
const GOOD_NAMES_MAX = 10_000;

function remember(name: string): void {
  if (GOOD_NAMES.size >= GOOD_NAMES_MAX) GOOD_NAMES.clear();
  GOOD_NAMES.add(name);
}

/** 413 for a record whose JSON text is over `DSTORE_MAX_RECORD_BYTES`. */
export function checkRecordBytes(bytes: number, limits: Pick<Limits, 'maxRecordBytes'>, row: number): void {
  if (bytes > limits.maxRecordBytes) {
    throw limitExceeded(
      413,
      'DSTORE_MAX_RECORD_BYTES',
      `row ${row}: the record is ${bytes} bytes; the limit is DSTORE_MAX_RECORD_BYTES (${limits.maxRecordBytes})`,
      { row },
    );
  }
}
