import { Argument, Option, type Command } from 'commander';
import { confirmOrRefuse } from '../confirm';
import { counted, formatBytes, formatCount, formatTime, renderTable } from '../format';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';

import type { TableInfo, TableStats } from '../../common/api';

export type { TableInfo, TableStats };

/**
 * The schema to send for `--schema`: text (`a:integer,b:string`) goes as it is, for the
 * coordinator to check; text starting with `{` must be a JSON object.
 */
export function parseSchemaFlag(text: string): string | Record<string, unknown> {
  const t = text.trim();
  if (!t.startsWith('{')) return t;
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch (e) {
    throw new CliError(
      `--schema is not valid JSON (${(e as Error).message}); write it as '{"age":"integer"}' or as age:integer,name:string`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new CliError('--schema must be a JSON object or column:type,… text');
  return v as Record<string, unknown>;
}

/** A table's columns for listings: `age:integer, ssn:string:encrypted`, or `-` when schemaless. */
export function schemaText(schema: Record<string, string> | undefined, encrypted: readonly string[] = []): string {
  const entries = Object.entries(schema ?? {});
  return entries.length === 0
    ? '-'
    : entries.map(([c, t]) => `${c}:${t}${encrypted.includes(c) ? ':encrypted' : ''}`).join(', ');
}

/** A table's rows for people: `1,234`, `≥1,200` when some chunks could not be counted, `?` when none could. */
export function rowsText(s: TableStats | undefined): string {
  if (!s || s.rows === null) return '?';
  return s.rowsExact ? formatCount(s.rows) : `≥${formatCount(s.rows)}`;
}

/** A table's size for people: always an estimate (`~12.3 MB`), but for an empty table. */
export function sizeText(s: TableStats | undefined): string {
  if (!s) return '?';
  return s.bytes === 0 ? '0 B' : `~${formatBytes(s.bytes)}`;
}

/**
 * The lines of `table ls` for `tables` (with stats): name, rows, chunks, size, columns, created. Pure, so unit-tested.
 */
export function tablesTable(tables: TableInfo[], maxWidth = 120): string[] {
  if (tables.length === 0) return ['no tables (create one with: dstore table create NAME)'];
  const lines = renderTable(
    ['name', 'rows', 'chunks', 'size', 'columns', 'created'],
    tables.map((t) => [
      t.name,
      rowsText(t.stats),
      t.stats ? formatCount(t.stats.chunks) : '?',
      sizeText(t.stats),
      schemaText(t.schema, t.encrypted),
      formatTime(t.createdAt),
    ]),
    { maxWidth, align: [undefined, 'right', 'right', 'right'] },
  ).lines;
  if (tables.some((t) => !t.stats || !t.stats.rowsExact))
    lines.push('(≥: some chunks have no live replica, only the others were counted; ?: not counted, no live worker)');
  return lines;
}

/** The tables with their stats, as GET /tables?stats=1 answers. */
export async function tablesWithStats(client: HttpClient): Promise<TableInfo[]> {
  return (await client.request<{ tables: TableInfo[] }>('GET', '/tables?stats=1')).tables;
}

/** The lines of `table ls` (also the shell's `tables`). */
export async function listTables(client: HttpClient, maxWidth = process.stdout.columns || 120): Promise<string[]> {
  return tablesTable(await tablesWithStats(client), maxWidth);
}

/** What dropping a table deletes, for the question and the refusal: `table t and its 1,200 rows in 2 chunk(s)`. */
export function dropWhat(t: TableInfo): string {
  const s = t.stats;
  if (!s) return `table ${t.name} and every row of it`;
  const rows =
    s.rows === null
      ? 'its rows (not counted: no live worker)'
      : `${s.rowsExact ? '' : 'at least '}${formatCount(s.rows)} ${s.rows === 1 && s.rowsExact ? 'row' : 'rows'}`;
  return `table ${t.name} and its ${rows} in ${formatCount(s.chunks)} chunk(s)`;
}

/** Creates a table (no-op when it exists with the same schema); returns the line to print. */
export async function createTable(
  client: HttpClient,
  name: string,
  schema?: unknown,
  changes?: boolean,
): Promise<{ created: boolean; line: string }> {
  const r = await client.request<{ created: boolean }>('PUT', tablePath(name), {
    ...(schema === undefined ? {} : { schema }),
    ...(changes ? { changes: true } : {}),
  });
  return { created: r.created, line: r.created ? `created table ${name}` : `table ${name} already exists` };
}

/** The body of `PATCH /tables/:name` from `--add col:type[=default]` (repeatable) and `--drop col`. */
export function alterBody(
  add: string[] = [],
  drop: string[] = [],
): {
  addColumns?: Record<string, string | { type: string; default: unknown }>;
  dropColumns?: string[];
} {
  const addColumns: Record<string, string | { type: string; default: unknown }> = {};
  for (const item of add) {
    const m = /^([^:=]+):([a-z]+)(?:=(.*))?$/s.exec(item.trim());
    if (!m)
      throw new CliError(
        `--add ${JSON.stringify(item)}: write column:type or column:type=default, e.g. --add score:integer=0`,
      );
    const [, col, type, raw] = m;
    if (raw === undefined) {
      addColumns[col.trim()] = type;
      continue;
    }
    // A default is JSON when it reads as JSON (0, true, "x", {"a":1}), else the text itself.
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // text
    }
    addColumns[col.trim()] = { type, default: value };
  }
  const body: ReturnType<typeof alterBody> = {};
  if (Object.keys(addColumns).length > 0) body.addColumns = addColumns;
  if (drop.length > 0) body.dropColumns = drop.map((d) => d.trim());
  if (!body.addColumns && !body.dropColumns) throw new CliError('give --add column:type or --drop column (or both)');
  return body;
}

const collect = (v: string, all: string[] = []) => [...all, v];

/** `dstore table create|ls|alter|drop`. */
export function registerTableCommand(program: Command): void {
  const table = program.command('table').description('create, list, alter and drop tables');

  withUrlOption(
    table
      .command('create')
      .description('create a table (succeeds without change if it already exists with the same schema)')
      .argument('<name>', 'table name: letters, digits, _ . -')
      .option(
        '--schema <columns>',
        'typed columns, e.g. "age:integer,name:string" or \'{"age":"integer"}\'; types: string, integer, number, boolean, json; add :encrypted to encrypt a column (needs DSTORE_ENCRYPTION_KEY on the coordinator)',
      )
      .option('--changes', 'keep a change stream of its committed writes (dstore watch), about 1,000,000 events'),
  ).action(async (name: string, o: { schema?: string; changes?: boolean }, cmd: Command) => {
    const schema = o.schema === undefined ? undefined : parseSchemaFlag(o.schema);
    process.stdout.write((await createTable(clientFor(cmd), name, schema, o.changes)).line + '\n');
  });

  withUrlOption(
    table
      .command('changes')
      .description("turn a table's change stream on or off (off forgets the events kept)")
      .argument('<name>', 'table')
      .addArgument(new Argument('<state>', 'on or off').choices(['on', 'off']))
      .option('--max-entries <n>', 'with on: keep about this many events (default 1,000,000)')
      .option('--max-age <seconds>', 'with on: keep events about this long'),
  ).action(async (name: string, state: 'on' | 'off', o: { maxEntries?: string; maxAge?: string }, cmd: Command) => {
    const whole = (flag: string, v: string) => {
      if (!/^\d+$/.test(v)) throw new CliError(`${flag} must be a whole number, got ${JSON.stringify(v)}`);
      return Number(v);
    };
    const retention = {
      ...(o.maxEntries === undefined ? {} : { maxEntries: whole('--max-entries', o.maxEntries) }),
      ...(o.maxAge === undefined ? {} : { maxAgeMs: whole('--max-age', o.maxAge) * 1000 }),
    };
    const changes = state === 'off' ? false : Object.keys(retention).length > 0 ? retention : true;
    await clientFor(cmd, { 'changes.maxEntries': '--max-entries', 'changes.maxAgeMs': '--max-age' }).request(
      'PATCH',
      tablePath(name),
      { changes },
    );
    process.stdout.write(`table ${name}: changes ${state}\n`);
  });

  withUrlOption(
    table
      .command('ls')
      .alias('list')
      .description(
        'list tables: name, rows (exact, from a count() read of every chunk; ≥ when some chunk has no live replica), chunks (exact), ' +
          'size (~: an estimate of the disk they take on the workers, every copy counted), columns, created',
      )
      .addOption(
        new Option(
          '--format <format>',
          'table (aligned) or json (the array of tables with their stats, as the API gives it)',
        )
          .choices(['table', 'json'])
          .default('table'),
      ),
  ).action(async (o: { format: 'table' | 'json' }, cmd: Command) => {
    const client = clientFor(cmd);
    const out =
      o.format === 'json'
        ? JSON.stringify(await tablesWithStats(client), null, 2)
        : (await listTables(client)).join('\n');
    process.stdout.write(out + '\n');
  });

  withUrlOption(
    table
      .command('alter')
      .description(
        "add or drop columns of a typed table: stored rows get an added column's default (or read without it), and lose a dropped one",
      )
      .argument('<name>', 'table to change')
      .option('--add <column:type[=default]>', 'add a column, e.g. --add score:integer=0 (repeatable)', collect)
      .option('--drop <column>', 'drop a column and its values from every row (repeatable)', collect),
  ).action(async (name: string, o: { add?: string[]; drop?: string[] }, cmd: Command) => {
    const r = await clientFor(cmd, { addColumns: '--add', dropColumns: '--drop' }).request<{
      added: string[];
      dropped: string[];
      rowsChanged?: number;
      pendingWorkers?: string[];
    }>('PATCH', tablePath(name), alterBody(o.add, o.drop));
    const parts = [
      ...(r.added.length ? [`added ${r.added.join(', ')}`] : []),
      ...(r.dropped.length ? [`dropped ${r.dropped.join(', ')}`] : []),
    ];
    const rows = r.rowsChanged === undefined ? '' : `; ${counted(r.rowsChanged, 'stored row')} changed`;
    const pending = r.pendingWorkers?.length ? ` (queued on ${r.pendingWorkers.join(', ')}, down)` : '';
    process.stdout.write(`table ${name}: ${parts.join(', ')}${rows}${pending}\n`);
  });

  withUrlOption(
    table
      .command('drop')
      .description('drop a table and every row of it; asks first (saying how many rows) unless --yes')
      .argument('<name>', 'table to drop')
      .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)'),
  ).action(async (name: string, o: { yes?: boolean }, cmd: Command) => {
    const client = clientFor(cmd);
    if (!o.yes) {
      const what = dropWhat(await client.request<TableInfo>('GET', tablePath(name, '?stats=1')));
      await confirmOrRefuse(o, 'table drop', what, `drop ${what}? [y/N] `);
    }
    const r = await client.request<{ dropped: string }>('DELETE', tablePath(name));
    process.stdout.write(`dropped table ${r.dropped}\n`);
  });
}
