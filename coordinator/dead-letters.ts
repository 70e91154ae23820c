import type { DstoreRedis } from '../common/redis';

/**
 * The dead-letter stream (`{<prefix>}:dead`) as operators read and clear it: ops entries a
 * worker could not decode or refused, each with its reason (see worker/ops-consumer.ts).
 * Listing leaves out each entry's payload, which may hold row data.
 */

/** One dead-lettered ops entry, without its payload. */
export interface DeadLetter {
  /** Its id in the dead-letter stream: what `DELETE /admin/dead-letters?ids=` takes. */
  id: string;
  /** The ops stream the entry came from. */
  stream: string;
  /** The entry's id in that stream. */
  entryId: string;
  worker: string;
  reason: string;
  /** The entry's message type as written (`POST`, `UPDATE`, …), or null when it had none. */
  type: string | null;
  /** When it was dead-lettered: ms since the epoch, by the Redis clock (the time part of `id`). */
  at: number;
}

/** A page of the dead-letter stream, newest first. */
export interface DeadLetterPage {
  /** Entries in the stream, listed or not. */
  total: number;
  deadLetters: DeadLetter[];
}

/** Which dead letters to delete: every one, those before an id, or the listed ids. */
export type DeadLetterSelection = { all: true } | { before: string } | { ids: string[] };

/** Entries listed when no limit is given. */
export const DEFAULT_DEAD_LETTER_LIMIT = 100;
/** Most entries one listing reads: each may carry up to 1 MB of payload that Redis sends along. */
export const MAX_DEAD_LETTER_LIMIT = 1000;

/** The newest `limit` dead letters and how many there are. */
export async function listDeadLetters(
  cmd: DstoreRedis,
  key: string,
  limit = DEFAULT_DEAD_LETTER_LIMIT,
): Promise<DeadLetterPage> {
  const [[e1, total], [e2, entries]] = (await cmd
    .multi()
    .xlen(key)
    .xrevrange(key, '+', '-', 'COUNT', limit)
    .exec()) as [[Error | null, number], [Error | null, [string, string[]][]]];
  if (e1 || e2) throw e1 ?? e2;
  return { total, deadLetters: entries.map(([id, fields]) => toDeadLetter(id, fields)) };
}

/** Deletes the selected dead letters; returns how many were deleted. */
export async function clearDeadLetters(cmd: DstoreRedis, key: string, sel: DeadLetterSelection): Promise<number> {
  if ('ids' in sel) return sel.ids.length === 0 ? 0 : cmd.xdel(key, ...sel.ids);
  // Exact MINID (no `~`): every entry older than the id goes, and none newer.
  if ('before' in sel) return cmd.xtrim(key, 'MINID', sel.before);
  // One transaction: an entry added meanwhile is either counted and deleted, or kept.
  const [[e1, n], [e2]] = (await cmd.multi().xlen(key).del(key).exec()) as [[Error | null, number], [Error | null]];
  if (e1 || e2) throw e1 ?? e2;
  return n;
}

function toDeadLetter(id: string, flat: string[]): DeadLetter {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]] = flat[i + 1];
  return {
    id,
    stream: f.stream ?? '',
    entryId: f.id ?? '',
    worker: f.worker ?? '',
    reason: f.reason ?? '',
    // Dead letters written before workers recorded the type: read it from the payload's start.
    type: f.type !== undefined ? f.type || null : (/^\{"type":"([^"\\]{1,64})"/.exec(f.entry ?? '')?.[1] ?? null),
    at: Number(id.split('-')[0]),
  };
}
