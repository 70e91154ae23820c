import {
  DEFAULT_CHANGE_RETENTION,
  parseToken,
  tokenOf,
  trimArgs,
  type ChangeEvent,
  type ChangeOp,
  type ChangeRetention,
} from '../common/changes';
import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';
import { ApiError, badRequest } from './errors';
import type { TableDef } from './table-def';

/** How long staged events of a write live unmoved (a write whose coordinator died is finished within a minute). */
const STAGED_TTL_S = 86_400;
/** Events moved into the stream per script call: bounds how long one call holds Redis. */
const MOVE_BATCH = 1000;

/**
 * Stages change events of one write (`write`: a POST's id, or an UPDATE's or DELETE's op id),
 * to be moved into the table's change stream when the write is ordered
 * ({@link publishChanges}). Events are `stagedEvent(…)` strings.
 */
export async function stageChanges(
  cmd: DstoreRedis,
  keys: Keys,
  table: string,
  write: string,
  events: readonly string[],
): Promise<void> {
  if (events.length === 0) return;
  const key = keys.changesStaged(table, write);
  for (let i = 0; i < events.length; i += 5000) {
    await cmd
      .multi()
      .rpush(key, ...events.slice(i, i + 5000))
      .expire(key, STAGED_TTL_S)
      .exec();
  }
}

/**
 * Moves every staged event of `write` into the table's change stream, in order, trimming it
 * to the table's retention. Runs under the table's write-order lock, right after the write's
 * ops were put on the worker streams, so the stream holds the table's writes in write order.
 * Each step is atomic (common/lua/move-changes-2.lua): sent again after a crash, it moves
 * only what is left.
 */
export async function publishChanges(
  cmd: DstoreRedis,
  keys: Keys,
  table: string,
  write: string,
  retention: ChangeRetention = DEFAULT_CHANGE_RETENTION,
): Promise<void> {
  const staged = keys.changesStaged(table, write);
  for (;;) {
    const [maxLen, minId] = trimArgs(retention, Date.now());
    const left = await cmd.moveChanges(staged, keys.changes(table), String(MOVE_BATCH), maxLen, minId);
    if (left === 0) return;
  }
}

/** The retention of a table's change stream from its catalogue entry (HGET text), or undefined when off or absent. */
export function changesOf(raw: string | null): ChangeRetention | undefined {
  return raw ? (JSON.parse(raw) as TableDef).changes : undefined;
}

/** How often a watcher with nothing new looks again (ms), at most. */
const POLL_MAX_MS = 100;

/**
 * Reads a table's change stream for watchers (`GET /tables/:name/changes`). A watch starts
 * after a token, or at the end of the stream; {@link start} refuses (410) a token after which
 * events were trimmed away, so a watcher never skips events silently.
 */
export class ChangeFeed {
  constructor(
    private readonly cmd: DstoreRedis,
    private readonly keys: Keys,
  ) {}

  /** The stream id a watch reads after: that of `after`, or the last event's (the end). */
  async start(table: string, after?: string): Promise<string> {
    const key = this.keys.changes(table);
    if (after === undefined) {
      const last = await this.cmd.xrevrange(key, '+', '-', 'COUNT', 1);
      return last[0]?.[0] ?? '0-0';
    }
    const t = parseToken(after);
    if (!t)
      throw badRequest(`after: ${JSON.stringify(after)} is not a change token (they look like 1700000000000-0.42)`, {
        field: 'after',
      });
    const first = await this.cmd.xrange(key, '-', '+', 'COUNT', 1);
    const firstN = first[0] ? Number(fieldOf(first[0][1], 'n')) : undefined;
    // Trimming removes events from the head: events after the token are gone when the first
    // event kept is past the one that followed it, or when every event is gone but it.
    const added = firstN === undefined ? await this.entriesAdded(key) : undefined;
    if ((firstN !== undefined && firstN > t.n + 1) || (added !== undefined && added > t.n))
      throw new ApiError(
        410,
        'changes_lost',
        `the changes of table ${table} after token ${after} are no longer kept (the stream keeps ${firstN === undefined ? 'none of them' : `events from ${tokenOf(first[0][0], firstN)} on`}; its retention is set by PUT/PATCH /tables/${table} "changes"). Read the table again and watch from the end`,
        { table, after },
      );
    return t.id;
  }

  private async entriesAdded(key: string): Promise<number | undefined> {
    try {
      const info = (await this.cmd.xinfo('STREAM', key)) as unknown[];
      for (let i = 0; i + 1 < info.length; i += 2) if (info[i] === 'entries-added') return Number(info[i + 1]);
    } catch {
      return undefined; // no stream: nothing was ever added
    }
    return undefined;
  }

  /** The events after stream id `from`, at most `count`, as stored (rows as JSON text). */
  async read(table: string, from: string, count = 500): Promise<StoredEvent[]> {
    const entries = await this.cmd.xrange(this.keys.changes(table), `(${from}`, '+', 'COUNT', count);
    return entries.map(([id, f]) => ({
      id,
      token: tokenOf(id, fieldOf(f, 'n')),
      op: fieldOf(f, 'op') as ChangeOp,
      _id: fieldOf(f, 'id'),
      row: fieldOf(f, 'row'),
    }));
  }

  /**
   * The events after `from`, in batches, for as long as `open()` holds: waits (polling, at
   * most {@link POLL_MAX_MS}) when there is nothing new, and yields an empty batch after
   * `idleMs` without events (a keep-alive).
   */
  async *follow(table: string, from: string, open: () => boolean, idleMs = 15_000): AsyncGenerator<StoredEvent[]> {
    let pause = 10;
    let last = Date.now();
    while (open()) {
      const batch = await this.read(table, from);
      if (batch.length > 0) {
        from = batch[batch.length - 1].id;
        pause = 10;
        last = Date.now();
        yield batch;
        continue;
      }
      if (Date.now() - last >= idleMs) {
        last = Date.now();
        yield [];
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, POLL_MAX_MS);
    }
  }
}

/** An event as the stream holds it: `row` is the stored JSON text ('' for a delete). */
export interface StoredEvent {
  id: string;
  token: string;
  op: ChangeOp;
  _id: string;
  row: string;
}

/** A stored event as a watcher gets it, the row turned by `decrypt` (encrypted columns). */
export function toChangeEvent(
  e: StoredEvent,
  decrypt?: (row: Record<string, unknown>) => Record<string, unknown>,
): ChangeEvent {
  if (e.op === 'delete' || e.row === '') return { token: e.token, op: e.op, _id: e._id };
  const row = JSON.parse(e.row) as Record<string, unknown>;
  return { token: e.token, op: e.op, _id: e._id, row: decrypt ? decrypt(row) : row };
}

function fieldOf(flat: string[], name: string): string {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return '';
}
