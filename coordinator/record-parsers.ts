import { parse as parseCsv } from 'csv-parse';
import type { Readable } from 'node:stream';
import { badRequest } from './errors';
import { checkRecordBytes } from './limits';
import { typeCsvRecord, type CsvTypes, type Schema } from './schema';

/** Input formats of a POST. */
export const RECORD_FORMATS = ['ndjson', 'json', 'csv'] as const;
export type RecordFormat = (typeof RECORD_FORMATS)[number];

/**
 * One parsed record and its 1-based position among the request's records, whatever the
 * format: blank NDJSON lines and the CSV header are not records. Errors name it as `row`.
 */
export interface ParsedRecord {
  row: number;
  value: unknown;
  /** The JSON text `value` was parsed from, when there is one (not for CSV): lets ingest skip re-serialising. */
  text?: string;
}

/** Picks the format from a Content-Type header; undefined when it names none of them. */
export function formatOf(contentType: string | undefined): RecordFormat | undefined {
  const ct = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (
    ct === 'application/x-ndjson' ||
    ct === 'application/ndjson' ||
    ct === 'application/jsonl' ||
    ct === 'application/jsonlines'
  )
    return 'ndjson';
  if (ct === 'application/json') return 'json';
  if (ct === 'text/csv' || ct === 'application/csv') return 'csv';
  return undefined;
}

/**
 * Streams the records of a body without holding it whole. Bad syntax is a 400 naming the
 * row; the text of one NDJSON line or JSON array element over `maxRecordBytes` is a 413
 * before it is parsed.
 */
export function parseRecords(
  body: Readable,
  format: RecordFormat,
  schema: Schema | undefined,
  maxRecordBytes = Infinity,
  csvTypes: CsvTypes = 'infer',
): AsyncGenerator<ParsedRecord> {
  switch (format) {
    case 'ndjson':
      return parseNdjson(body, maxRecordBytes);
    case 'json':
      return parseJsonArray(body, maxRecordBytes);
    case 'csv':
      return parseCsvRecords(body, schema, csvTypes);
  }
}

/**
 * NDJSON split by hand rather than with readline: readline's event and async-iterator
 * machinery per line was a visible share of a coordinator's ingest time. Lines end at
 * `\n`, `\r\n` or a lone `\r`, as with readline.
 */
async function* parseNdjson(body: Readable, maxRecordBytes: number): AsyncGenerator<ParsedRecord> {
  body.setEncoding('utf8');
  let row = 0;
  let lineNo = 0;
  let rest = '';
  const parse = (raw: string): ParsedRecord | undefined => {
    lineNo++;
    const line = lineNo === 1 && raw.startsWith('\ufeff') ? raw.slice(1) : raw;
    if (line.trim() === '') return undefined;
    row++;
    // Characters are at most bytes; count bytes only when it could matter.
    if (line.length > maxRecordBytes / 4) checkRecordBytes(Buffer.byteLength(line), { maxRecordBytes }, row);
    try {
      return { row, value: JSON.parse(line), text: line };
    } catch (e) {
      throw badRequest(`row ${row} (line ${lineNo}): invalid JSON: ${(e as Error).message}`, { row, line: lineNo });
    }
  };
  for await (const piece of body as AsyncIterable<string>) {
    const text = rest + piece;
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      const line = text.slice(from, nl > from && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
      from = nl + 1;
      // A lone CR also ends a line (as in readline); rare, so looked for only here.
      if (line.includes('\r')) {
        for (const part of line.split('\r')) {
          const rec = parse(part);
          if (rec) yield rec;
        }
        continue;
      }
      const rec = parse(line);
      if (rec) yield rec;
    }
    rest = text.slice(from);
    // A CR at the end of a piece may be the first half of a CRLF: decided with the next piece.
    if (rest.length > maxRecordBytes) checkRecordBytes(Buffer.byteLength(rest), { maxRecordBytes }, row + 1);
  }
  if (rest !== '') {
    for (const part of rest.split('\r')) {
      const rec = parse(part);
      if (rec) yield rec;
    }
  }
}

/**
 * A JSON array read element by element: the text of each top-level element is cut out
 * by tracking strings and nesting, then parsed on its own. What separates the elements
 * follows JSON's rules, never lines: any JSON whitespace (space, tab, LF, CR) may come
 * before the `[`, around each element and comma, and after the `]`, and an element may
 * span many lines (its text then does too: ingest compacts it). A UTF-8 BOM is accepted
 * as the first character of the body only.
 */
async function* parseJsonArray(body: Readable, maxRecordBytes: number): AsyncGenerator<ParsedRecord> {
  body.setEncoding('utf8');
  let state: 'start' | 'between' | 'element' | 'end' = 'start';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let buf = '';
  let row = 0;
  const fail = (msg: string) => badRequest(`row ${row + 1}: ${msg}`, { row: row + 1 });
  const finish = (): ParsedRecord => {
    row++;
    if (buf.length > maxRecordBytes / 4) checkRecordBytes(Buffer.byteLength(buf), { maxRecordBytes }, row);
    try {
      return { row, value: JSON.parse(buf), text: buf };
    } catch (e) {
      throw badRequest(`row ${row}: invalid JSON: ${(e as Error).message}`, { row });
    } finally {
      buf = '';
    }
  };
  let first = true;
  for await (const text of body as AsyncIterable<string>) {
    // The utf8 decoder never splits a character, so a leading BOM is whole in the first piece.
    const piece = first && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    if (text.length > 0) first = false;
    let from = 0;
    for (let i = 0; i < piece.length; i++) {
      const c = piece[i];
      if (state === 'element') {
        if (inString) {
          if (escaped) escaped = false;
          else if (c === '\\') escaped = true;
          else if (c === '"') inString = false;
          continue;
        }
        if (c === '"') inString = true;
        else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
          if (depth === 0) {
            if (c === '}') throw fail('unbalanced "}"');
            buf += piece.slice(from, i);
            yield finish();
            state = 'end';
            continue;
          }
          depth--;
        } else if (c === ',' && depth === 0) {
          buf += piece.slice(from, i);
          yield finish();
          state = 'between';
        }
        continue;
      }
      if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue;
      if (state === 'start') {
        if (c !== '[')
          throw badRequest('a JSON body must be an array of records (or send NDJSON as application/x-ndjson)', {
            row: 0,
          });
        state = 'between';
      } else if (state === 'between') {
        if (c === ']' && row === 0) {
          state = 'end';
          continue;
        }
        state = 'element';
        from = i;
        i--; // let the element branch see its first character
      } else {
        throw badRequest(`unexpected ${JSON.stringify(c)} after the end of the JSON array`, { row });
      }
    }
    if (state === 'element') {
      buf += piece.slice(from);
      if (buf.length > maxRecordBytes) checkRecordBytes(Buffer.byteLength(buf), { maxRecordBytes }, row + 1);
    }
  }
  // The loop above moves `state` on; TypeScript cannot see that through for-await.
  const last = state as string;
  if (last !== 'end')
    throw fail(last === 'start' ? 'empty body; send a JSON array of records' : 'the JSON array is not closed');
}

async function* parseCsvRecords(
  body: Readable,
  schema: Schema | undefined,
  csvTypes: CsvTypes,
): AsyncGenerator<ParsedRecord> {
  const parser = body.pipe(parseCsv({ columns: true, skip_empty_lines: true, bom: true, trim: false }));
  let row = 0;
  try {
    for await (const rec of parser as AsyncIterable<Record<string, string>>) {
      row++;
      yield { row, value: typeCsvRecord(rec, schema, row, csvTypes) };
    }
  } catch (e) {
    if ((e as { status?: number }).status) throw e;
    // csv-parse reads ahead of what we consumed; its own count says where it stopped.
    const bad = ((e as { records?: number }).records ?? row) + 1;
    throw badRequest(`row ${bad}: invalid CSV: ${(e as Error).message}`, { row: bad });
  }
}
