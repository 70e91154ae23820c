/**
 * SQLite's ordering of the values `json_extract` yields (NULL < numbers < text, text
 * by UTF-8 bytes), so that a coordinator merging sorted answers from many workers
 * orders rows exactly as each worker's SQLite did.
 */
export type SqlValue = null | number | string;

function rank(v: SqlValue): number {
  return v === null ? 0 : typeof v === 'number' ? 1 : 2;
}

/** Compares two values as SQLite's ORDER BY (BINARY collation) does. */
export function compareSql(a: SqlValue, b: SqlValue): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) return (a as number) - (b as number);
  if (ra === 2) return a === b ? 0 : Buffer.compare(Buffer.from(a as string), Buffer.from(b as string));
  return 0;
}

/** The value SQLite's `json_extract` gives for a JSON value (booleans as 0/1, objects as JSON text). */
export function toSqlValue(v: unknown): SqlValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}
