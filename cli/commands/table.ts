import type { Command } from 'commander';
import { formatTime, renderTable } from '../format';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';

/** A table as GET /tables lists it. */
export interface TableInfo {
  name: string;
  schema?: Record<string, string>;
  /** Columns stored encrypted. */
  encrypted?: string[];
  version: number;
  createdAt: number;
}

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
    throw new CliError(`--schema is not valid JSON (${(e as Error).message}); write it as '{"age":"integer"}' or as age:integer,name:string`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CliError('--schema must be a JSON object or column:type,… text');
  return v as Record<string, unknown>;
}

/** A table's columns for listings: `age:integer, ssn:string:encrypted`, or `-` when schemaless. */
export function schemaText(schema: Record<string, string> | undefined, encrypted: readonly string[] = []): string {
  const entries = Object.entries(schema ?? {});
  return entries.length === 0 ? '-' : entries.map(([c, t]) => `${c}:${t}${encrypted.includes(c) ? ':encrypted' : ''}`).join(', ');
}

/** The lines of `table ls` (also the shell's `tables`). */
export async function listTables(client: HttpClient, maxWidth = process.stdout.columns || 120): Promise<string[]> {
  const { tables } = await client.request<{ tables: TableInfo[] }>('GET', '/tables');
  if (tables.length === 0) return ['no tables (create one with: dstore table create NAME)'];
  return renderTable(
    ['name', 'columns', 'created'],
    tables.map((t) => [t.name, schemaText(t.schema, t.encrypted), formatTime(t.createdAt)]),
    { maxWidth },
  ).lines;
}

/** Creates a table (no-op when it exists with the same schema); returns the line to print. */
export async function createTable(client: HttpClient, name: string, schema?: unknown): Promise<{ created: boolean; line: string }> {
  const r = await client.request<{ created: boolean }>('PUT', tablePath(name), schema === undefined ? {} : { schema });
  return { created: r.created, line: r.created ? `created table ${name}` : `table ${name} already exists` };
}

/** `dstore table create|ls|drop`. */
export function registerTableCommand(program: Command): void {
  const table = program.command('table').description('create, list and drop tables');

  withUrlOption(
    table
      .command('create')
      .description('create a table (succeeds without change if it already exists with the same schema)')
      .argument('<name>', 'table name: letters, digits, _ . -')
      .option('--schema <columns>', 'typed columns, e.g. "age:integer,name:string" or \'{"age":"integer"}\'; types: string, integer, number, boolean, json; add :encrypted to encrypt a column (needs DSTORE_ENCRYPTION_KEY on the coordinator)'),
  ).action(async (name: string, o: { schema?: string }, cmd: Command) => {
    const schema = o.schema === undefined ? undefined : parseSchemaFlag(o.schema);
    process.stdout.write((await createTable(clientFor(cmd), name, schema)).line + '\n');
  });

  withUrlOption(table.command('ls').alias('list').description('list tables: name, columns, created')).action(async (_o: unknown, cmd: Command) => {
    process.stdout.write((await listTables(clientFor(cmd))).join('\n') + '\n');
  });

  withUrlOption(table.command('drop').description('drop a table and every row of it').argument('<name>', 'table to drop')).action(async (name: string, _o: unknown, cmd: Command) => {
    const r = await clientFor(cmd).request<{ dropped: string }>('DELETE', tablePath(name));
    process.stdout.write(`dropped table ${r.dropped}\n`);
  });
}
