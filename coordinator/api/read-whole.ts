import { limitExceeded } from '../limits';

/**
 * Reads a small answer whole (a record by `_id`, a `count()`): every output line of `read`,
 * or a 504 naming `DSTORE_QUERY_TIMEOUT_MS` once `timeoutMs` passes (the read is then
 * closed, so its workers stop). `what` names the read in that message.
 */
export async function readWhole(read: AsyncIterable<string>, timeoutMs: number, what: string): Promise<string[]> {
  const it = read[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), timeoutMs)));
  const lines: string[] = [];
  let done = false;
  try {
    for (;;) {
      const r = await Promise.race([it.next(), expired]);
      if (r === 'expired') throw limitExceeded(504, 'DSTORE_QUERY_TIMEOUT_MS', `${what} ran longer than DSTORE_QUERY_TIMEOUT_MS (${timeoutMs} ms)`);
      if (r.done) break;
      // A plain read may yield several lines as one piece of text.
      lines.push(...r.value.split('\n'));
    }
    done = true;
    return lines;
  } finally {
    clearTimeout(timer);
    if (!done) void it.return?.(undefined)?.catch(() => undefined);
  }
}
