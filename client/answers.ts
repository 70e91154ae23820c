/**
 * The lines a read answers with besides rows, after the rows: `{"_next": "<cursor>"}` when a
 * limit cut the answer short, then `{"_partial": true, …}` when chunks were left out, or
 * `{"_error": {…}}` when the read failed after rows had been sent.
 */

/** The last line of a query answer when it is neither a row nor the cursor. */
export type Trailer =
  | { kind: 'partial'; missingWorkers: string[]; missingChunks: number }
  | { kind: 'error'; code: string; message: string; details: Record<string, unknown> };

/** How an answer ended: the cursor to the next page (`_next`), then the trailer, each if any. */
export interface AnswerEnd {
  next?: string;
  trailer?: Trailer;
}

/** Reads a `{"_partial": …}` or `{"_error": …}` line; undefined for a row. */
export function parseTrailer(line: string): Trailer | undefined {
  if (!line.includes('"_partial"') && !line.includes('"_error"')) return undefined;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (v._partial === true) {
    const workers = Array.isArray(v.missingWorkers) ? v.missingWorkers.map(String) : [];
    return {
      kind: 'partial',
      missingWorkers: workers,
      missingChunks: typeof v.missingChunks === 'number' ? v.missingChunks : 0,
    };
  }
  const e = v._error as { error?: unknown; message?: unknown } | undefined;
  if (e && typeof e === 'object') {
    const { error, message, ...details } = e;
    return {
      kind: 'error',
      code: String(error ?? 'internal'),
      message: typeof message === 'string' ? message : JSON.stringify(e),
      details,
    };
  }
  return undefined;
}

/** The cursor of a `{"_next": "<cursor>"}` line; undefined for any other line. */
export function parseNext(line: string): string | undefined {
  if (!line.startsWith('{"_next":')) return undefined;
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    return Object.keys(v).length === 1 && typeof v._next === 'string' ? v._next : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Passes the rows of an answer (NDJSON lines, in batches as they arrive) to `onRows` and
 * returns how it ended. The last two lines are held back until the answer ends, since only
 * then is it known whether they are the cursor and the trailer. `onRows` returning false
 * stops reading.
 */
export async function readAnswer(
  batches: AsyncIterable<string[]>,
  onRows: (lines: string[]) => Promise<boolean | void> | boolean | void,
): Promise<AnswerEnd> {
  let held: string[] = [];
  for await (const batch of batches) {
    const lines = held.length === 0 ? batch : [...held, ...batch];
    held = lines.splice(Math.max(0, lines.length - 2));
    if (lines.length > 0 && (await onRows(lines)) === false) return {};
  }
  const end: AnswerEnd = {};
  const last = held[held.length - 1];
  if (last !== undefined) {
    end.trailer = parseTrailer(last);
    if (end.trailer) held.pop();
  }
  const next = held.length > 0 ? parseNext(held[held.length - 1]) : undefined;
  if (next !== undefined) {
    end.next = next;
    held.pop();
  }
  if (held.length > 0) await onRows(held);
  return end;
}
