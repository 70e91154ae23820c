import { Option, type Command } from 'commander';
import {
  AGGREGATE_OPS,
  aggregateName,
  type AggregateOp,
  type AggregateSpec,
  type QuerySpec,
  type SortSpec,
} from '../../common/query';
import { FETCH_TERMS, inCliTerms, type CliTerms } from '../cli-terms';
import { CSV_HEADER_ROWS, CsvWriter, lateColumnsNote, tableColumns } from '../columns';
import { renderTable } from '../format';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';
import type { TableInfo } from './table';
import { parseNext, parseTrailer, readAnswer, type AnswerEnd, type Trailer } from '../../client/answers';
import { DEFAULT_PAGE_SIZE } from '../../common/api';

export { parseNext, parseTrailer, type Trailer };

/** How an answer ended (client/answers.ts). */
export type QueryEnd = AnswerEnd;

/**
 * `dstore fetch`: reads rows (or aggregates) and streams them out as NDJSON, a JSON array,
 * CSV or an aligned table. Also home of the flag parsers shared with update, delete and shell.
 */

/** Rows the table format collects at most; the rest of the answer is not read. */
export const TABLE_ROW_CAP = CSV_HEADER_ROWS;

/** Output formats of fetch. */
export const FETCH_FORMATS = ['ndjson', 'json', 'csv', 'table'] as const;
export type FetchFormat = (typeof FETCH_FORMATS)[number];

/** A query as POST /tables/:name/query takes it. */
export type QueryBody = QuerySpec & { partial?: boolean; cursor?: string };

/** Parses a JSON flag value that must be an object (`--where`, `--set`); the error names the flag. */
export function parseJsonObjectFlag(flag: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CliError(
      `${flag} is not valid JSON (${(e as Error).message}); quote it for the shell, e.g. ${flag} '{"age":{"$gt":30}}'`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CliError(`${flag} must be a JSON object, e.g. ${flag} '{"age":{"$gt":30}}', got ${text.trim()}`);
  }
  return v as Record<string, unknown>;
}

/** Parses a comma-separated list of field names (`--fields a,b`); blanks around names are dropped. */
export function parseFieldList(flag: string, text: string): string[] {
  const names = text.split(',').map((s) => s.trim());
  if (names.some((n) => n === ''))
    throw new CliError(
      `${flag} must be comma-separated field names, e.g. ${flag} name,age; got ${JSON.stringify(text)}`,
    );
  return names;
}

/**
 * Parses `--sort f[:asc|:desc],g`: ascending unless a field ends in `:desc`. `flag` names it in errors (the shell's is
 * `"sort"`).
 */
export function parseSort(text: string, flag = '--sort'): SortSpec[] {
  return parseFieldList(flag, text).map((item) => {
    const i = item.lastIndexOf(':');
    if (i <= 0) return { field: item, dir: 'asc' };
    const dir = item
      .slice(i + 1)
      .trim()
      .toLowerCase();
    if (dir !== 'asc' && dir !== 'desc')
      throw new CliError(`${flag} ${JSON.stringify(item)}: the direction after ":" must be asc or desc`);
    return { field: item.slice(0, i).trim(), dir };
  });
}

/** Parses `--limit N` (or another flag's N): a whole number, 0 or more. */
export function parseLimit(text: string, flag = '--limit'): number {
  if (!/^\s*\d+\s*$/.test(text))
    throw new CliError(`${flag} must be a whole number (0 or more), got ${JSON.stringify(text)}`);
  return Number(text);
}

const AGG_ITEM = /^([A-Za-z_]\w*)\s*\(\s*(.*?)\s*\)(?:\s+as\s+(.+?))?$/i;

/**
 * Parses `--agg "count(),sum(x),avg(y) as m"`: comma-separated `op(field)` with an
 * optional ` as name`. `count()` and `count(*)` count rows; the other ops need a field.
 * Ops are case-insensitive. Commas inside parentheses do not split. `flag` names it in
 * errors (the shell's is `"aggregate"`).
 */
export function parseAggregates(text: string, flag = '--agg'): AggregateSpec[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth = Math.max(0, depth - 1);
    else if (text[i] === ',' && depth === 0) {
      items.push(text.slice(start, i));
      start = i + 1;
    }
  }
  items.push(text.slice(start));
  return items.map((raw) => {
    const item = raw.trim();
    const m = AGG_ITEM.exec(item);
    if (!m)
      throw new CliError(
        `${flag} ${JSON.stringify(item)}: expected op(field) with an optional "as name", e.g. ${flag} "count(),avg(price) as avg_price"`,
      );
    const op = m[1].toLowerCase();
    if (!AGGREGATE_OPS.includes(op as AggregateOp)) {
      throw new CliError(
        `${flag} ${JSON.stringify(item)}: unknown aggregate ${JSON.stringify(m[1])}; use ${AGGREGATE_OPS.join(', ')}`,
      );
    }
    const field = m[2] === '' || (op === 'count' && m[2] === '*') ? undefined : m[2];
    if (field === undefined && op !== 'count')
      throw new CliError(`${flag} ${JSON.stringify(item)}: ${op} needs a field, e.g. ${op}(price)`);
    const spec: AggregateSpec = { op: op as AggregateOp };
    if (field !== undefined) spec.field = field;
    if (m[3] !== undefined) spec.as = m[3].trim();
    return spec;
  });
}

/** The flags of fetch, as commander gives them. */
export interface FetchFlags {
  where?: string;
  fields?: string;
  sort?: string;
  limit?: string;
  agg?: string;
  groupBy?: string;
  partial?: boolean;
  explain?: boolean;
  all?: boolean;
  pageSize?: string;
  cursor?: string;
}

/** Builds the query body from fetch's flags; flag mistakes throw a {@link CliError} naming the flag. */
export function buildQuery(o: FetchFlags): QueryBody {
  const q: QueryBody = {};
  if (o.where !== undefined) q.where = parseJsonObjectFlag('--where', o.where);
  if (o.fields !== undefined) q.fields = parseFieldList('--fields', o.fields);
  if (o.sort !== undefined) q.sort = parseSort(o.sort);
  if (o.limit !== undefined) q.limit = parseLimit(o.limit);
  if (o.agg !== undefined) q.aggregate = parseAggregates(o.agg);
  if (o.groupBy !== undefined) q.groupBy = parseFieldList('--group-by', o.groupBy);
  if (q.groupBy && !q.aggregate) throw new CliError('--group-by needs --agg, e.g. --group-by city --agg "count()"');
  if (q.fields && q.aggregate)
    throw new CliError(
      '--fields cannot be combined with --agg: the output columns are the --group-by fields and the aggregates',
    );
  if (o.partial) q.partial = true;
  if (o.pageSize !== undefined && !o.all) throw new CliError('--page-size goes with --all (the rows of each page)');
  if (o.all) {
    if (o.limit !== undefined)
      throw new CliError('--all reads every row page by page: use --page-size N for the rows of a page, not --limit');
    if (q.aggregate) throw new CliError('--all pages rows; an aggregate answer is one page: drop --all');
    q.limit = o.pageSize !== undefined ? parseLimit(o.pageSize, '--page-size') : DEFAULT_PAGE_SIZE;
    if (q.limit === 0) throw new CliError('--page-size must be 1 or more');
  }
  if (o.cursor !== undefined) {
    if (q.limit === undefined) throw new CliError('--cursor continues a page: give the same --limit as that page');
    q.cursor = o.cursor;
  }
  return q;
}

/**
 * Runs a query, passing rows (NDJSON lines) to `onRows` in batches as they arrive, and
 * returns how it ended (client/answers.ts). `onRows` returning false stops reading.
 */
export async function runQuery(
  client: HttpClient,
  table: string,
  body: QueryBody,
  onRows: (lines: string[]) => Promise<boolean | void>,
): Promise<QueryEnd> {
  return readAnswer(client.streamLineBatches(tablePath(table, '/query'), body), onRows);
}

/**
 * Runs a query page by page: each page is `body` with the cursor the page before ended with,
 * until a page ends without one (or `onRows` returns false). Returns the trailer of the page
 * that ended the read, if any; a partial page stops it (its warning says what was missing).
 */
export async function runPages(
  client: HttpClient,
  table: string,
  body: QueryBody,
  onRows: (lines: string[]) => Promise<boolean | void>,
): Promise<QueryEnd> {
  let stopped = false;
  const rows = async (lines: string[]) => {
    const r = await onRows(lines);
    if (r === false) stopped = true;
    return r;
  };
  for (let cursor: string | undefined; ;) {
    const end = await runQuery(client, table, cursor === undefined ? body : { ...body, cursor }, rows);
    if (stopped || end.trailer || end.next === undefined) return end;
    cursor = end.next;
  }
}

/** Writes to stdout, waiting when the pipe is full. A reader that went away (EPIPE) ends the process quietly. */
export async function writeStdout(text: string): Promise<void> {
  if (process.stdout.listenerCount('error') === 0) {
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
  if (!process.stdout.write(text)) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
}

/**
 * Says what a trailer means: a warning on stderr for a partial answer, a thrown error for a
 * failed one (its message in `terms`, the command's flags).
 */
export function reportTrailer(t: Trailer | undefined, rows: number, terms: CliTerms = FETCH_TERMS): void {
  if (!t) return;
  if (t.kind === 'error')
    throw new CliError(
      `the read failed after ${rows} rows: ${inCliTerms(t.message, t.details, terms)}`,
      undefined,
      t.code,
      t.details,
    );
  const who = t.missingWorkers.length > 0 ? ` (workers not answering: ${t.missingWorkers.join(', ')})` : '';
  process.stderr.write(
    `dstore: warning: partial answer: ${t.missingChunks} chunks had no replica that answered${who}\n`,
  );
}

/**
 * The columns of an answer when they are known before its first row: the group-by fields
 * and aggregates, the `--fields`, or `_id` and the schema's columns (a table with a schema
 * holds no other field). Undefined for whole rows of a schemaless table.
 */
export async function knownColumns(client: HttpClient, table: string, q: QuerySpec): Promise<string[] | undefined> {
  if (q.aggregate) return [...(q.groupBy ?? []), ...q.aggregate.map(aggregateName)];
  if (q.fields) return q.fields;
  const def = await client.request<TableInfo>('GET', tablePath(table));
  return def.schema ? ['_id', ...Object.keys(def.schema).filter((c) => c !== '_id')] : undefined;
}

async function fetchAction(table: string, o: FetchFlags & { format: FetchFormat }, cmd: Command): Promise<void> {
  const body = buildQuery(o);
  const client = clientFor(cmd, FETCH_TERMS);
  const read = o.all ? runPages : runQuery;
  // One page (not --all) that stops before the end says how to get the next one.
  const reportEnd = (end: QueryEnd, rows: number) => {
    if (end.next !== undefined && !o.all)
      process.stderr.write(`dstore: more rows follow; the next page: the same command with --cursor ${end.next}\n`);
    reportTrailer(end.trailer, rows);
  };
  if (o.explain) {
    // The answer is one NDJSON line: {"explain": …}.
    const line = await client.request<{ explain: unknown }>('POST', tablePath(table, '/query'), {
      ...body,
      explain: true,
    });
    process.stdout.write(JSON.stringify(line.explain, null, 2) + '\n');
    return;
  }
  let count = 0;
  if (o.format === 'ndjson') {
    const t = await read(client, table, body, async (lines) => {
      count += lines.length;
      await writeStdout(lines.join('\n') + '\n');
    });
    return reportEnd(t, count);
  }
  if (o.format === 'json') {
    // One array, streamed: a row a line between "[" and "]". A read that fails part way
    // leaves the array open, so a JSON reader fails too rather than take it as whole.
    const t = await read(client, table, body, async (lines) => {
      await writeStdout((count === 0 ? '[\n' : ',\n') + lines.join(',\n'));
      count += lines.length;
    });
    if (t.trailer?.kind !== 'error') await writeStdout(count === 0 ? '[]\n' : '\n]\n');
    return reportEnd(t, count);
  }
  const known = await knownColumns(client, table, body);
  if (o.format === 'csv') {
    const csv = new CsvWriter(known);
    const t = await read(client, table, body, async (lines) => {
      const out = csv.push(lines.map((l) => JSON.parse(l) as Record<string, unknown>));
      count += lines.length;
      if (out.length > 0) await writeStdout(out.join('\n') + '\n');
    });
    const rest = csv.end();
    if (rest.length > 0) await writeStdout(rest.join('\n') + '\n');
    const note = lateColumnsNote(csv.lateColumns());
    if (note) process.stderr.write(`dstore: ${note}\n`);
    return reportEnd(t, count);
  }
  const rows: Record<string, unknown>[] = [];
  let more = false;
  const t = await read(client, table, body, async (lines) => {
    for (const line of lines) {
      if (rows.length === TABLE_ROW_CAP) {
        more = true;
        return false;
      }
      rows.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  if (rows.length === 0) {
    await writeStdout('(no rows)\n');
  } else {
    const columns = tableColumns(known, rows);
    const { lines, hidden } = renderTable(
      columns,
      rows.map((r) => columns.map((c) => r[c])),
      { maxWidth: process.stdout.columns || 120 },
    );
    await writeStdout(lines.join('\n') + '\n');
    if (hidden.length > 0)
      process.stderr.write(
        `dstore: ${hidden.length} columns did not fit the terminal: ${hidden.join(', ')} (use --fields, or --format json, ndjson or csv)\n`,
      );
  }
  if (more)
    process.stderr.write(
      `dstore: showing the first ${TABLE_ROW_CAP} rows; use --limit, or --format json, ndjson or csv for all of them\n`,
    );
  if (!more) reportEnd(t, rows.length);
  else reportTrailer(t.trailer, rows.length);
}

/** `dstore fetch TABLE [flags]`. */
export function registerFetchCommand(program: Command): void {
  const cmd = program
    .command('fetch')
    .summary('read rows or aggregates of a table')
    .description('read rows of a table (or aggregates of them) and stream them to stdout')
    .argument('<table>', 'table to read')
    .option('--where <json>', 'filter as JSON, e.g. \'{"age":{"$gte":18}}\' (see docs/filter.md)')
    .option('--fields <list>', 'comma-separated fields to return (default: whole rows)')
    .option('--sort <list>', 'comma-separated sort keys, each field[:asc|:desc], e.g. age:desc,name')
    .option('--limit <n>', 'return at most n rows (a page: when more follow, stderr gives the --cursor of the next)')
    .option('--cursor <cursor>', 'the page after the one that gave this cursor (the same query and --limit)')
    .option('--all', 'read every row, page by page, following the cursors (see --page-size)')
    .option('--page-size <n>', `rows per page with --all (default ${DEFAULT_PAGE_SIZE})`)
    .option(
      '--agg <list>',
      'aggregates: comma-separated count(), sum(f), min(f), max(f), avg(f), each with an optional "as name"',
    )
    .option('--group-by <list>', 'comma-separated fields to group the aggregates by (needs --agg)')
    .option(
      '--partial',
      'answer with the rows that can be read when some chunks have no live replica (a warning says what is missing) instead of failing',
    )
    .option(
      '--explain',
      "print the read's plan instead of rows: the workers asked, the chunks each answers for, whether _id pruned them, and each worker's SQLite plan (naming any index it uses)",
    )
    .addOption(
      new Option(
        '--format <format>',
        "output: ndjson (one JSON row a line, streamed), json (one array, streamed), csv (every column: the schema's, --fields or the aggregates, " +
          'else the keys of the first 10,000 rows, and stderr names any first seen later) or table (aligned, every column, at most 10,000 rows, cut to the terminal width)',
      )
        .choices(FETCH_FORMATS)
        .default('ndjson'),
    );
  withUrlOption(cmd).action(fetchAction);
}
