import type { InsertResult } from '../../common/api';
import { Option, type Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { CliError, clientFor, tablePath, withUrlOption } from '../http-client';
import { countNewlines, formatUploadProgress, ProgressLine } from '../progress';
import { counted } from '../format';

/** Input formats of post. */
export const POST_FORMATS = ['ndjson', 'json', 'csv'] as const;
export type PostFormat = (typeof POST_FORMATS)[number];

/** The Content-Type the coordinator reads each format from. */
export const CONTENT_TYPES: Record<PostFormat, string> = {
  ndjson: 'application/x-ndjson',
  json: 'application/json',
  csv: 'text/csv',
};

/** What a POST of records answers. */
export type PostResult = InsertResult;

/**
 * The format of an upload: the flag when given, else the file's extension (.ndjson and
 * .jsonl → ndjson, .json → json, .csv → csv), else ndjson (also for stdin).
 */
export function detectFormat(flag: string | undefined, file: string | undefined): PostFormat {
  if (flag !== undefined) {
    const f = flag.trim().toLowerCase();
    if (!POST_FORMATS.includes(f as PostFormat))
      throw new CliError(`--format must be one of ${POST_FORMATS.join(', ')}, got ${JSON.stringify(flag)}`);
    return f as PostFormat;
  }
  switch (file === undefined || file === '-' ? '' : path.extname(file).toLowerCase()) {
    case '.json':
      return 'json';
    case '.csv':
      return 'csv';
    default:
      return 'ndjson';
  }
}

/** The closing line of a post, e.g. `inserted 1000 rows in 1 chunk into t (52341 rows/s, 4.12 MB/s, 0.02 s)`. */
export function postSummary(table: string, r: PostResult, bytes: number, elapsedMs: number): string {
  const secs = Math.max(elapsedMs, 1) / 1000;
  const rows = r.inserted + (r.replaced ?? 0) + (r.merged ?? 0);
  const changed =
    r.replaced !== undefined
      ? `, replaced ${counted(r.replaced, 'row')}`
      : r.merged !== undefined
        ? `, merged ${counted(r.merged, 'row')}`
        : '';
  let line = `inserted ${counted(r.inserted, 'row')}${changed} in ${counted(r.chunks, 'chunk')} into ${table} (${Math.round(rows / secs)} rows/s, ${(bytes / 1e6 / secs).toFixed(2)} MB/s, ${secs.toFixed(2)} s)`;
  if (r.underReplicated > 0) line += `, ${counted(r.underReplicated, 'chunk')} under-replicated`;
  return line;
}

/** What is being sent: bytes and line breaks so far. */
interface Counters {
  bytes: number;
  newlines: number;
  /** When the last byte was read, once it was. */
  doneAt?: number;
}

/**
 * A web stream over a Node stream that counts what it passes, pulled only as fast as
 * the connection takes it. A read error (a file that vanished) surfaces as a CliError.
 */
function countingBody(source: Readable, what: string, c: Counters): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let r: IteratorResult<Buffer>;
      try {
        r = await it.next();
      } catch (e) {
        throw new CliError(`cannot read ${what}: ${(e as Error).message}`);
      }
      if (r.done) {
        c.doneAt = Date.now();
        controller.close();
        return;
      }
      c.bytes += r.value.length;
      c.newlines += countNewlines(r.value);
      controller.enqueue(r.value);
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** Opens the input: a file (with its size) or stdin. */
async function openInput(file: string | undefined): Promise<{ stream: Readable; what: string; size?: number }> {
  if (file === undefined || file === '-') {
    if (file === undefined && process.stdin.isTTY)
      throw new CliError('no input: give a FILE, or pipe records into stdin (use - to type them)');
    return { stream: process.stdin, what: 'stdin' };
  }
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOENT' ? `cannot read ${file}: no such file` : `cannot read ${file}: ${(e as Error).message}`,
    );
  }
  if (st.isDirectory()) throw new CliError(`cannot read ${file}: it is a directory`);
  const stream = fs.createReadStream(file, { highWaterMark: 256 * 1024 });
  // Opening can still fail (permissions); wait for it so the message names the file.
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e) => reject(new CliError(`cannot read ${file}: ${e.message}`)));
  });
  return { stream, what: file, size: st.isFile() ? st.size : undefined };
}

async function postAction(
  table: string,
  file: string | undefined,
  o: { format?: string; csvTypes?: string; onConflict?: string },
  cmd: Command,
): Promise<void> {
  const format = detectFormat(o.format, file);
  const client = clientFor(cmd);
  const input = await openInput(file);
  const counters: Counters = { bytes: 0, newlines: 0 };
  const started = Date.now();
  const progress = new ProgressLine(() =>
    formatUploadProgress({
      sent: counters.bytes,
      total: input.size,
      // CSV's first line is its header; JSON arrays have no row per line.
      rows: format === 'json' ? undefined : Math.max(0, counters.newlines - (format === 'csv' ? 1 : 0)),
      elapsedMs: (counters.doneAt ?? Date.now()) - started,
      done: counters.doneAt !== undefined,
    }),
  );
  progress.start();
  let result: PostResult;
  try {
    const params = new URLSearchParams();
    if (o.csvTypes && o.csvTypes !== 'infer') params.set('csvTypes', o.csvTypes);
    if (o.onConflict && o.onConflict !== 'error') params.set('onConflict', o.onConflict);
    const query = params.size > 0 ? `?${params.toString()}` : '';
    result = await client.request<PostResult>('POST', tablePath(table, '/records') + query, {
      contentType: CONTENT_TYPES[format],
      body: countingBody(input.stream, input.what, counters),
    });
  } finally {
    progress.stop();
    if (input.stream !== process.stdin) input.stream.destroy();
  }
  process.stdout.write(postSummary(table, result, counters.bytes, Date.now() - started) + '\n');
}

/** `dstore post TABLE [FILE|-]`. */
export function registerPostCommand(program: Command): void {
  const cmd = program
    .command('post')
    .summary('insert records from a file or stdin')
    .description(
      'insert records from an NDJSON, JSON or CSV file or stdin, streamed to the coordinator; a progress line on stderr when it is a terminal, one summary line on stdout at the end',
    )
    .argument('<table>', 'table to insert into')
    .argument('[file]', 'NDJSON, JSON array or CSV (with a header row) file; - or nothing reads stdin')
    .addOption(
      new Option(
        '--format <format>',
        'input format (default: from the file extension .ndjson/.jsonl, .json or .csv, else ndjson)',
      ).choices(POST_FORMATS),
    )
    .addOption(
      new Option(
        '--csv-types <types>',
        'CSV into a table without a schema: infer numbers, true/false and empty cells (null), or keep every value as text',
      )
        .choices(['infer', 'string'])
        .default('infer'),
    )
    .addOption(
      new Option(
        '--on-conflict <mode>',
        'a record whose _id is stored: error refuses the whole request (409), replace swaps the row, merge sets the given fields',
      )
        .choices(['error', 'replace', 'merge'])
        .default('error'),
    );
  withUrlOption(cmd).action(postAction);
}
