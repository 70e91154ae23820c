/**
 * The bodies the HTTP API answers with, as the coordinator builds them and the client
 * (client/) and CLI read them: one definition for both sides of the wire.
 */
import type { IndexStatus, TableIndexes } from './indexes';

/**
 * What `GET /tables?stats=1` and `GET /tables/:name?stats=1` add to a table: its rows,
 * chunks and size, for `dstore table ls` and the question `dstore table drop` asks.
 */
export interface TableStats {
  /**
   * Rows, from a `count()` read of every chunk (the same read as `--agg "count()"`): exact
   * when `rowsExact`; otherwise the rows of the chunks that could be read (a lower bound),
   * or null when none could (no live worker).
   */
  rows: number | null;
  rowsExact: boolean;
  /** Chunks of committed POSTs (what a read answers), from the placement records: exact. */
  chunks: number;
  /**
   * Estimated bytes on the workers' disks, every copy counted: each worker's shard file
   * size (its last heartbeat) shared out by the rows the placement records put on it.
   * Always an estimate (rows differ in size, shards hold free pages).
   */
  bytes: number;
}

/** A table as `GET /tables` and `GET /tables/:name` answer it. */
export interface TableInfo {
  name: string;
  /** Column → type (`string`, `integer`, `number`, `boolean`, `json`); absent for a schemaless table. */
  schema?: Record<string, string>;
  /** Columns stored encrypted. */
  encrypted?: string[];
  /** Values of columns added with a default: a row stored without the column gets it. */
  defaults?: Record<string, unknown>;
  version: number;
  /** Secondary indexes declared on the table. */
  indexes?: TableIndexes;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** With `?stats=1`. */
  stats?: TableStats;
}

/** One index of `GET /tables/:name/indexes`, with its state on every known worker. */
export interface IndexListing {
  name: string;
  fields: string[];
  /** Per known worker: `ready`, `failed` (with `error`), or `building` until it has applied it. */
  workers: Record<string, { state: IndexStatus['state']; error?: string }>;
}

/** `GET /tables/:name/indexes`. */
export interface IndexList {
  table: string;
  version: number;
  indexes: IndexListing[];
}

/**
 * What a POST does with a row whose `_id` is stored (`?onConflict=`): refuse it (409, the
 * default), replace the row, or set its given fields.
 */
export type OnConflict = 'error' | 'replace' | 'merge';

/** The choices of `?onConflict=`, the first the default. */
export const ON_CONFLICT: readonly OnConflict[] = ['error', 'replace', 'merge'];

/** Rows a page asks for when a client pages through a whole result (`Table.query()`, `dstore fetch --all`). */
export const DEFAULT_PAGE_SIZE = 1000;

/** What a POST of records answers: stored whole, or not at all (an error). */
export interface InsertResult {
  /** Rows stored anew. */
  inserted: number;
  /** With `onConflict=replace`: rows whose `_id` was stored, replaced whole. */
  replaced?: number;
  /** With `onConflict=merge`: rows whose `_id` was stored, their given fields set. */
  merged?: number;
  /** Chunks the rows were cut into. */
  chunks: number;
  /** The POST's id (in logs and dead letters). */
  post: string;
  /** Chunks acknowledged by fewer than R workers (recorded for repair). */
  underReplicated: number;
}

/** What `PATCH /tables/:name/records` answers. */
export interface UpdateResult {
  /** Rows changed, each counted once. */
  updated: number;
  /** Workers that have the change queued but not applied yet (down, or lost during the request). */
  pendingWorkers?: string[];
}

/** What `DELETE /tables/:name/records` answers. */
export interface DeleteResult {
  /** Rows deleted, each counted once. */
  deleted: number;
  /** As for {@link UpdateResult}. */
  pendingWorkers?: string[];
}

/** The body of every error answer: a stable `error` code, a message, and details (`field`, `row`, …). */
export interface ErrorBody {
  error: string;
  message: string;
  [detail: string]: unknown;
}
