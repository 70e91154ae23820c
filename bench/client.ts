/**
 * The bench's HTTP client of a dstore cluster: POSTs slices of the data file as streamed
 * NDJSON bodies, and runs reads counting what comes back.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { QuerySpec } from '../common/query';
import type { DataSet } from './data';

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One HTTP exchange with a streamed request body and the answer collected by `onData`. */
function request(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: NodeJS.ReadableStream | string | undefined,
  onData: (b: Buffer) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      res.on('data', onData);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (typeof body === 'string') req.end(body);
    else body.pipe(req);
  });
}

/**
 * POSTs every slice of the data set (`lanes` POSTs at a time), each a streamed NDJSON
 * body read from the file. Throws unless every POST answers 200 with every row inserted (or,
 * with `onConflict`, inserted, replaced or merged). Returns rows/s over the whole load.
 */
export async function ingest(
  baseUrl: string,
  table: string,
  data: DataSet,
  lanes: number,
  onConflict?: 'replace' | 'merge',
): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < data.slices.length) {
      const s = data.slices[next++];
      const chunks: Buffer[] = [];
      const status = await request(
        `${baseUrl}/tables/${table}/records${onConflict ? `?onConflict=${onConflict}` : ''}`,
        'POST',
        { 'content-type': 'application/x-ndjson' },
        fs.createReadStream(data.file, { start: s.start, end: s.end - 1, highWaterMark: 1 << 20 }),
        (b) => chunks.push(b),
      );
      const text = Buffer.concat(chunks).toString();
      const answer = JSON.parse(text) as { inserted?: number; replaced?: number; merged?: number };
      if (status !== 200 || (answer.inserted ?? 0) + (answer.replaced ?? 0) + (answer.merged ?? 0) !== s.rows)
        throw new Error(`POST of ${s.rows} rows answered ${status}: ${text.slice(0, 500)}`);
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return data.rows / ((performance.now() - t0) / 1000);
}

/** What a read returned: the line count, the first `keep` lines, the time taken. */
export interface ReadResult {
  count: number;
  lines: string[];
  ms: number;
  bytes: number;
  /** The cursor of the next page, when a limit cut the answer short (and every line was kept). */
  next?: string;
}

/**
 * Runs a query through `POST /tables/:t/query`, counting lines as they stream in (without
 * parsing them) and keeping the first `keep`. Throws on a non-200 or an `_error` trailer.
 */
export async function query(baseUrl: string, table: string, q: QuerySpec, keep = 2000): Promise<ReadResult> {
  const t0 = performance.now();
  let count = 0;
  let bytes = 0;
  let tail = '';
  const lines: string[] = [];
  const status = await request(
    `${baseUrl}/tables/${table}/query`,
    'POST',
    { 'content-type': 'application/json' },
    JSON.stringify(q),
    (b) => {
      bytes += b.length;
      const text = tail + b.toString('utf8');
      let from = 0;
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', from)) {
        count++;
        if (lines.length < keep) lines.push(text.slice(from, i));
        from = i + 1;
      }
      tail = text.slice(from);
    },
  );
  const ms = performance.now() - t0;
  if (status !== 200)
    throw new Error(
      `query ${JSON.stringify(q)} answered ${status}: ${lines.join('\n').slice(0, 500) || tail.slice(0, 500)}`,
    );
  const last = lines[lines.length - 1] ?? '';
  if (last.startsWith('{"_error"') || last.startsWith('{"_partial"'))
    throw new Error(`query ${JSON.stringify(q)} ended with ${last}`);
  // A page a limit cut short ends with its cursor: not a row.
  if (last.startsWith('{"_next":') && count === lines.length) {
    lines.pop();
    return { count: count - 1, lines, ms, bytes, next: (JSON.parse(last) as { _next: string })._next };
  }
  return { count, lines, ms, bytes };
}
