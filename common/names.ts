import { NameError } from './errors';

/**
 * Rules for names that end up inside Redis keys or SQLite metadata: table names,
 * worker and coordinator ids, chunk and op ids. One place, so every entry point
 * rejects the same things with the same words.
 */
export const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

/** The kinds of names dstore checks. */
export type NameKind = 'table' | 'worker id' | 'coordinator id' | 'chunk id' | 'op id' | 'request id' | 'backup id';

/** Whether `value` is a valid table name / process id. */
export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && NAME_PATTERN.test(value);
}

/** Whether `value` is a valid generated id (chunk, op, request). */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/**
 * Throws a {@link NameError} unless `value` is a valid name of the given kind.
 * Table names and process ids: 1–64 chars of letters, digits, `_`, `.`, `-`, not
 * starting with `.` or `-` (no `:`, which separates Redis key parts).
 */
export function assertName(kind: NameKind, value: unknown): string {
  const ok =
    kind === 'table' || kind === 'worker id' || kind === 'coordinator id' ? isValidName(value) : isValidId(value);
  if (!ok) {
    const shown =
      typeof value === 'string' ? JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value) : String(value);
    const rule =
      kind === 'table' || kind === 'worker id' || kind === 'coordinator id'
        ? '1-64 characters of letters, digits, "_", "." or "-", not starting with "." or "-"'
        : '1-80 characters of letters, digits, "_" or "-"';
    throw new NameError(`invalid ${kind} ${shown}: use ${rule}`);
  }
  return value as string;
}

/** Longest field (column) name, in UTF-16 code units. */
export const MAX_FIELD_NAME_LENGTH = 256;

/**
 * What is wrong with a record field or column name, or undefined when it is fine:
 * 1-256 characters, no control characters (U+0000-U+001F, U+007F), not starting with
 * "$" (reserved for filter operators). Any other text, quotes, spaces and SQL included,
 * is a valid name: names only ever reach SQLite as bound JSON paths.
 */
export function fieldNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_FIELD_NAME_LENGTH) return `is ${name.length} characters long; at most ${MAX_FIELD_NAME_LENGTH}`;
  const c = /[\u0000-\u001f\u007f]/.exec(name);
  if (c) return `contains the control character U+${c[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  if (name.startsWith('$')) return 'starts with "$", which is reserved for filter operators';
  return undefined;
}
