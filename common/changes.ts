/**
 * Change streams (docs/architecture.md, "Change streams"): a table with changes on keeps its
 * committed writes, one event per row, in its write order, on the Redis stream
 * `<p>:table:{<t>}:changes`. The format of an event and the settings of a table's stream.
 */

/** What happened to a row. */
export type ChangeOp = 'insert' | 'update' | 'delete';

/** One event as a watcher gets it: the row after an insert or update, `_id` only for a delete. */
export interface ChangeEvent {
  /** Where the event is in the table's stream: give it as `after` to go on after it. */
  token: string;
  op: ChangeOp;
  _id: string;
  row?: Record<string, unknown>;
}

/** How much of a table's change stream Redis keeps (trimmed as events are added). */
export interface ChangeRetention {
  /** Keep about this many events. */
  maxEntries?: number;
  /** Keep events about this long (ms). */
  maxAgeMs?: number;
}

/** The retention of a table whose `changes` give none. */
export const DEFAULT_CHANGE_RETENTION: Required<Pick<ChangeRetention, 'maxEntries'>> = { maxEntries: 1_000_000 };

/** Bounds of a retention, so a typo cannot ask Redis to keep everything or nothing. */
export const CHANGE_RETENTION_LIMITS = {
  maxEntries: { min: 100, max: 1_000_000_000 },
  maxAgeMs: { min: 1000, max: 365 * 86_400_000 },
} as const;

/**
 * A token: the event's stream id and its ordinal in the table's stream, `<ms>-<seq>.<n>`
 * (common/lua/move-changes-2.lua): the id says where to go on, the ordinal whether events
 * after it were trimmed.
 */
export const TOKEN_PATTERN = /^(\d{1,20}-\d{1,20})\.(\d{1,20})$/;

/** The token of the event with stream id `id` and ordinal `n`. */
export function tokenOf(id: string, n: string | number): string {
  return `${id}.${n}`;
}

/** A token's stream id and ordinal, or undefined when it is not a token. */
export function parseToken(token: string): { id: string; n: number } | undefined {
  const m = TOKEN_PATTERN.exec(token);
  return m ? { id: m[1], n: Number(m[2]) } : undefined;
}

const SEP = '\x1f';

/** How every stored row begins (coordinator/ingest.ts, withIdFirst). */
const ID_HEAD = '{"_id":"';

/** The `_id` of a stored row (JSON text): read off its head when it holds no escape, else parsed. */
export function storedRowId(line: string): string {
  if (line.startsWith(ID_HEAD)) {
    const end = line.indexOf('"', ID_HEAD.length);
    const id = line.slice(ID_HEAD.length, end);
    if (end > 0 && !id.includes('\\')) return id;
  }
  const row = JSON.parse(line) as { _id?: unknown };
  if (typeof row._id !== 'string') throw new Error(`a stored row without _id: ${line.slice(0, 100)}`);
  return row._id;
}

/** One staged event, as common/lua/move-changes-2.lua reads it (`row` empty for a delete). */
export function stagedEvent(op: ChangeOp, id: string, row = ''): string {
  return `${op}${SEP}${id}${SEP}${row}`;
}

/**
 * Reads the `changes` of a table definition in a request body: `true` (on, default
 * retention), `false` (off), or `{maxEntries?, maxAgeMs?}` (on). Returns the retention, or
 * false; throws an Error naming the problem (the caller makes it a 400 on `field`).
 */
export function parseChanges(input: unknown): ChangeRetention | false {
  if (input === false) return false;
  if (input === true) return { ...DEFAULT_CHANGE_RETENTION };
  if (!input || typeof input !== 'object' || Array.isArray(input))
    throw new Error('must be true, false or {"maxEntries": N, "maxAgeMs": MS}');
  const out: ChangeRetention = {};
  for (const [k, v] of Object.entries(input)) {
    if (k !== 'maxEntries' && k !== 'maxAgeMs')
      throw new Error(`unknown key ${JSON.stringify(k)}; it takes maxEntries, maxAgeMs`);
    const { min, max } = CHANGE_RETENTION_LIMITS[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new Error(`${k} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return Object.keys(out).length > 0 ? out : { ...DEFAULT_CHANGE_RETENTION };
}

/** The trim arguments of move-changes-2.lua for a retention at Redis time `nowMs`: [maxLen, minId]. */
export function trimArgs(r: ChangeRetention, nowMs: number): [string, string] {
  return [String(r.maxEntries ?? 0), r.maxAgeMs === undefined ? '' : `${Math.max(0, nowMs - r.maxAgeMs)}-0`];
}

/**
 * The row an upsert merge leaves: the stored row (JSON text) with the patch's top-level
 * fields set, `_id` first. The worker writes it (worker/shard-store.ts) and a table's change
 * stream shows it, from this one function.
 */
export function mergedRow(stored: string, patch: string, id: string): string {
  return JSON.stringify(Object.assign({ _id: id }, JSON.parse(stored), JSON.parse(patch)));
}
