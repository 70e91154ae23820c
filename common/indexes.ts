import { compileFilter, indexKeyExpr, jsonPath, parseField } from './filter';
import type { QuerySpec } from './query';

/**
 * Secondary indexes: declared per table in the catalogue, built by every worker on its
 * shard table of that table (so every chunk it holds, now or later, is covered), and used
 * by the worker's own SQLite planner where they are built. Not unique: uniqueness across
 * shards is the `_id` index's job.
 */

/** One index as declared: the fields it orders by, leading field first. */
export interface IndexSpec {
  fields: string[];
}

/** A table's indexes and the version of that set (bumped by every create and drop). */
export interface TableIndexes {
  version: number;
  indexes: Record<string, IndexSpec>;
}

/** Where an index stands on one worker. */
export type IndexState = 'building' | 'ready' | 'failed';

/** An index's state on one worker, as its heartbeat reports it. */
export interface IndexStatus {
  state: IndexState;
  fields: string[];
  /** Why it failed (state `failed`). */
  error?: string;
}

/** Limits of index declarations. */
export const INDEX_LIMITS = { perTable: 16, fields: 8 } as const;

/** Index names: like SQL identifiers, so they read the same in every tool. */
export const INDEX_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A declaration that is not valid: what and where. */
export class IndexError extends Error {
  override readonly name = 'IndexError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** Checks an index name and its spec (`{"fields": [...]}`); returns the spec normalised. */
export function checkIndex(name: unknown, spec: unknown): IndexSpec {
  if (typeof name !== 'string' || !INDEX_NAME_PATTERN.test(name))
    throw new IndexError(
      'index',
      `invalid index name ${JSON.stringify(String(name).slice(0, 80))}: use 1-63 letters, digits or "_", not starting with a digit`,
    );
  if (!spec || typeof spec !== 'object' || Array.isArray(spec))
    throw new IndexError('fields', 'the body must be a JSON object {"fields": ["field", …]}');
  const { fields, ...rest } = spec as { fields?: unknown };
  const extra = Object.keys(rest);
  if (extra.length > 0)
    throw new IndexError(extra[0], `unknown key ${JSON.stringify(extra[0])}; an index takes fields`);
  if (!Array.isArray(fields) || fields.length === 0)
    throw new IndexError('fields', 'fields must be a non-empty array of field names, e.g. ["city", "amount"]');
  if (fields.length > INDEX_LIMITS.fields)
    throw new IndexError('fields', `an index has at most ${INDEX_LIMITS.fields} fields, got ${fields.length}`);
  const seen = new Set<string>();
  fields.forEach((f, i) => {
    if (typeof f !== 'string') throw new IndexError(`fields[${i}]`, `expected a field name (string), got ${typeof f}`);
    try {
      parseField(f);
    } catch (e) {
      throw new IndexError(`fields[${i}]`, (e as Error).message);
    }
    if (f === '_id') throw new IndexError(`fields[${i}]`, '_id is indexed already (it is the primary key)');
    if (seen.has(f)) throw new IndexError(`fields[${i}]`, `field ${JSON.stringify(f)} is listed twice`);
    seen.add(f);
  });
  return { fields: fields as string[] };
}

/** The SQL expression an index keys `field` by (see {@link indexKeyExpr}). */
export function indexedExpr(field: string): string {
  return indexKeyExpr(jsonPath(field));
}

/**
 * Whether an index makes a read narrow: each shard reads about the rows it answers, so the
 * fixed cost of asking a worker outweighs what spreading the read over more of them saves.
 * True for a filter with a top-level term on an index's leading field (the terms the
 * workers' planner writes for an index, see compileFilter), and for a `limit` read in an
 * order an index gives (`_id`, or an index's leading field as first sort key), which each
 * worker reads in order and stops at the limit. The coordinator then asks the fewest workers
 * that hold every chunk (coordinator/read-plan.ts).
 */
export function isNarrowRead(q: QuerySpec, indexes?: TableIndexes): boolean {
  const leading = new Set(Object.values(indexes?.indexes ?? {}).map((ix) => ix.fields[0]));
  if (q.limit !== undefined && !q.aggregate) {
    const first = q.sort?.[0]?.field;
    if (first === undefined || first === '_id' || leading.has(first)) return true;
  }
  if (leading.size === 0 || q.where === undefined) return false;
  return compileFilter(q.where, 'where', new Set([...leading].map(jsonPath))).usesIndex === true;
}
