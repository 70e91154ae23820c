/**
 * The nemesis' HTTP client: sends one request (never retried) and sorts the answer into
 * what the model needs to know: answered (a status and a body), refused (the connection
 * was never made, so nothing was sent) or cut (reset, closed or timed out: the request
 * may or may not have taken effect).
 */
import { COLUMNS, type PostFormat } from './schedule';
import type { Doc } from './model';

/** What became of one request. */
export type Answer =
  | { kind: 'answered'; status: number; text: string; ms: number }
  | { kind: 'refused'; error: string; ms: number }
  | { kind: 'cut'; error: string; ms: number };

/** Client-side limit of one request: above every server-side timeout of the nemesis cluster. */
export const REQUEST_TIMEOUT_MS = 40_000;

function errorText(e: unknown): { text: string; refused: boolean } {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const code = err.cause?.code;
  return {
    text: `${err.name}: ${err.message}${err.cause ? ` (${code ?? err.cause.message ?? ''})` : ''}`,
    refused: code === 'ECONNREFUSED',
  };
}

/** Sends one request; never throws. */
export async function send(
  url: string,
  method: string,
  body: string | undefined,
  contentType = 'application/json',
): Promise<Answer> {
  const t = Date.now();
  try {
    const res = await fetch(url, {
      method,
      headers: body === undefined ? {} : { 'content-type': contentType },
      body,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    return { kind: 'answered', status: res.status, text, ms: Date.now() - t };
  } catch (e) {
    const { text, refused } = errorText(e);
    return { kind: refused ? 'refused' : 'cut', error: text, ms: Date.now() - t };
  }
}

/** Short text of an answer for logs: `200`, `503 unavailable: …`, `cut (…)`. */
export function describeAnswer(a: Answer): string {
  if (a.kind !== 'answered') return `${a.kind} (${a.error.slice(0, 120)})`;
  if (a.status === 200) return `200 in ${a.ms} ms`;
  return `${a.status} ${a.text.slice(0, 160)}`;
}

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return `"${v.replace(/"/g, '""')}"`;
  return String(v);
}

/** The body of a POST of `docs` in `format` (without `_id` when the store is to generate it), and its Content-Type. */
export function encodeRows(
  docs: readonly Doc[],
  format: PostFormat,
  generatedIds = false,
): { body: string; contentType: string } {
  const rows: Record<string, unknown>[] = generatedIds ? docs.map(({ _id, ...rest }) => rest) : [...docs];
  const columns = generatedIds ? COLUMNS.filter((c) => c !== '_id') : COLUMNS;
  switch (format) {
    case 'ndjson':
      return { body: rows.map((r) => JSON.stringify(r)).join('\n') + '\n', contentType: 'application/x-ndjson' };
    case 'json':
      return { body: JSON.stringify(rows), contentType: 'application/json' };
    case 'pretty':
      return { body: JSON.stringify(rows, null, 2) + '\n', contentType: 'application/json' };
    case 'csv': {
      const lines = [columns.join(','), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(','))];
      return { body: lines.join('\r\n') + '\r\n', contentType: 'text/csv' };
    }
  }
}

/** A read answer split into rows and what ended it. */
export interface ReadLines {
  lines: Record<string, unknown>[];
  /** The `{"_partial": true, …}` line, if the answer says it is not complete. */
  partial?: Record<string, unknown>;
  /** The `{"_error": …}` line, if the stream ended on an error. */
  error?: Record<string, unknown>;
  /** The cursor of the `{"_next": …}` line: a limit cut the answer short. */
  next?: string;
  /** Set when the body is not NDJSON. */
  garbled?: string;
}

/** Splits an NDJSON answer; `_next`, `_partial` and `_error` lines are taken out. */
export function parseLines(text: string): ReadLines {
  const out: ReadLines = { lines: [] };
  for (const raw of text.split('\n')) {
    if (raw.trim() === '') continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      out.garbled = raw.slice(0, 200);
      continue;
    }
    if (v._partial !== undefined) out.partial = v;
    else if (v._error !== undefined) out.error = v;
    else if (typeof v._next === 'string' && Object.keys(v).length === 1) out.next = v._next;
    else out.lines.push(v);
  }
  return out;
}
