import type { Command } from 'commander';
import * as readline from 'node:readline';
import type { CliTerms } from '../cli-terms';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';
import {
  parseAggregates,
  parseFieldList,
  parseSort,
  reportTrailer,
  runQuery,
  writeStdout,
  type QueryBody,
} from './fetch';
import { getRecord } from './get';
import type { PostResult } from './post';
import { createTable, listTables, parseSchemaFlag } from './table';

const HELP = [
  'use TABLE              work on TABLE, which must exist (see create)',
  'create TABLE [SCHEMA]  create TABLE and use it; SCHEMA as for dstore table create --schema, e.g. name:string,hp:integer',
  '{"a": 1, ...}          insert one JSON record into the current table',
  '[{...}, {...}]         insert a JSON array of records',
  'FETCH                  print every row of the current table, one JSON object a line',
  'FETCH {query}          print a query\'s answer, e.g. FETCH {"where": {"a": {"$gt": 1}}, "sort": "a:desc", "limit": 10}',
  '                       (keys: where, fields, sort, limit, aggregate, groupBy, partial; sort, fields, groupBy and',
  '                       aggregate also as dstore fetch writes them: "sort": "hp:desc,name", "aggregate": "count(),avg(hp)")',
  'get ID                 print the record of the current table whose _id is ID',
  'tables                 list the tables',
  'help                   this list',
  'exit, quit             leave (so does end of input or Ctrl-D)',
  'With piped input, the exit code is 1 when any command failed.',
];

/** How the shell's errors name the API's query keys: FETCH takes them as they are, but for `partial`. */
export const SHELL_TERMS: CliTerms = { partial: '"partial": true' };

/**
 * A FETCH query as the API takes it, from the shell's JSON: `sort`, `fields`, `groupBy`
 * and `aggregate` may also be written as the CLI's flags take them (`"sort":
 * "Horsepower:desc,Name"`, `"aggregate": "count(),avg(hp) as mean"`); errors name the key.
 */
export function shellQuery(v: Record<string, unknown>): QueryBody {
  const q: Record<string, unknown> = { ...v };
  if (typeof q.sort === 'string') q.sort = parseSort(q.sort, '"sort"');
  else if (Array.isArray(q.sort))
    q.sort = q.sort.flatMap((s) => (typeof s === 'string' ? parseSort(s, '"sort"') : [s]));
  if (typeof q.fields === 'string') q.fields = parseFieldList('"fields"', q.fields);
  if (typeof q.groupBy === 'string') q.groupBy = parseFieldList('"groupBy"', q.groupBy);
  if (typeof q.aggregate === 'string') q.aggregate = parseAggregates(q.aggregate, '"aggregate"');
  return q as QueryBody;
}

/**
 * The interactive console of dstore, after the original program's: one command a line.
 * State is the current table. Each failure prints one line and the session goes on.
 */
export class Shell {
  /** The table that records and FETCH go to. */
  table?: string;

  constructor(
    private readonly client: HttpClient,
    private readonly interactive: boolean,
  ) {}

  /** Runs one line; returns false when the session should end. Throws on a failed command. */
  async run(line: string): Promise<boolean> {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) return true;
    if (text.startsWith('{') || text.startsWith('[')) {
      await this.insert(text);
      return true;
    }
    const [word] = text.split(/\s+/, 1);
    const rest = text.slice(word.length).trim();
    switch (word.toLowerCase()) {
      case 'exit':
      case 'quit':
        return false;
      case 'help':
        await writeStdout(HELP.join('\n') + '\n');
        return true;
      case 'tables':
        await writeStdout((await listTables(this.client)).join('\n') + '\n');
        return true;
      case 'use':
        await this.use(rest);
        return true;
      case 'create':
        await this.create(rest);
        return true;
      case 'get':
        if (rest === '') throw new CliError('usage: get ID');
        await writeStdout(JSON.stringify(await getRecord(this.client, this.current(), rest)) + '\n');
        return true;
      case 'fetch':
        await this.fetch(rest);
        return true;
      default:
        throw new CliError(`unknown command ${JSON.stringify(word)}; type help for the list`);
    }
  }

  /**
   * Switches to an existing table; a missing one is an error saying how to create it (a typo must not create a table).
   */
  private async use(name: string): Promise<void> {
    if (name === '' || /\s/.test(name)) throw new CliError('usage: use TABLE');
    try {
      await this.client.request('GET', tablePath(name));
    } catch (e) {
      if (e instanceof CliError && e.status === 404)
        throw new CliError(
          `table ${name} does not exist; create it with: create ${name} [SCHEMA] (or dstore table create ${name})`,
          404,
          e.code,
        );
      throw e;
    }
    this.table = name;
    await writeStdout(`using ${name}\n`);
  }

  /** `create TABLE [SCHEMA]`: creates the table (no change if it exists with that schema) and uses it. */
  private async create(rest: string): Promise<void> {
    const m = /^(\S+)(?:\s+(.+))?$/.exec(rest);
    if (!m) throw new CliError('usage: create TABLE [SCHEMA], e.g. create cars name:string,hp:integer');
    const [, name, schema] = m;
    const r = await createTable(this.client, name, schema === undefined ? undefined : parseSchemaFlag(schema));
    this.table = name;
    await writeStdout(`${r.line}; using ${name}\n`);
  }

  private current(): string {
    if (this.table === undefined) throw new CliError('no table selected; type: use TABLE');
    return this.table;
  }

  private async insert(text: string): Promise<void> {
    const table = this.current();
    try {
      JSON.parse(text);
    } catch (e) {
      throw new CliError(`not a JSON record: ${(e as Error).message}`);
    }
    const array = text.startsWith('[');
    const r = await this.client.request<PostResult>('POST', tablePath(table, '/records'), {
      contentType: array ? 'application/json' : 'application/x-ndjson',
      body: array ? text : text + '\n',
    });
    await writeStdout(`inserted ${r.inserted} ${r.inserted === 1 ? 'row' : 'rows'} into ${table}\n`);
  }

  private async fetch(arg: string): Promise<void> {
    const table = this.current();
    let query: QueryBody = {};
    if (arg !== '') {
      let v: unknown;
      try {
        v = JSON.parse(arg);
      } catch (e) {
        throw new CliError(`FETCH takes a JSON query object: ${(e as Error).message}`);
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        throw new CliError('FETCH takes a JSON query object, e.g. FETCH {"where": {"a": 1}}');
      query = shellQuery(v as Record<string, unknown>);
    }
    let rows = 0;
    const end = await runQuery(this.client, table, query, async (lines) => {
      rows += lines.length;
      await writeStdout(lines.join('\n') + '\n');
    });
    // A note, not a row: on stderr, so piped output stays rows only.
    if (end.next !== undefined)
      process.stderr.write(`(more rows follow: the same FETCH with "cursor": ${JSON.stringify(end.next)})\n`);
    reportTrailer(end.trailer, rows, SHELL_TERMS);
    if (this.interactive) await writeStdout(`(${rows} ${rows === 1 ? 'row' : 'rows'})\n`);
  }
}

async function shellAction(_o: unknown, cmd: Command): Promise<void> {
  const client = clientFor(cmd, SHELL_TERMS);
  const interactive = process.stdin.isTTY === true;
  // Without a terminal there is no prompt and no echo: piped input gives only the answers.
  const rl = readline.createInterface({
    input: process.stdin,
    output: interactive ? process.stdout : undefined,
    terminal: interactive,
    prompt: 'dstore> ',
  });
  rl.on('SIGINT', () => rl.close());
  const shell = new Shell(client, interactive);
  if (interactive) {
    process.stdout.write(`dstore shell on ${client.baseUrl}; type help for commands\n`);
    rl.prompt();
  }
  let lineNo = 0;
  let failed = 0;
  for await (const line of rl) {
    lineNo++;
    let more = true;
    try {
      more = await shell.run(line);
    } catch (e) {
      failed++;
      // Piped input has no echo: the line number says which command failed.
      process.stderr.write(`error${interactive ? '' : ` (line ${lineNo})`}: ${(e as Error).message}\n`);
    }
    if (!more) break;
    if (interactive) rl.prompt();
  }
  rl.close();
  // A script must learn that its input did not all go through.
  if (!interactive && failed > 0) throw new CliError(`${failed} command(s) of the input failed (errors above)`);
}

/** `dstore shell`: the interactive console. */
export function registerShellCommand(program: Command): void {
  const cmd = program
    .command('shell')
    .summary('interactive console (use TABLE, JSON records, FETCH)')
    .description(
      'interactive console: create or use TABLE, type JSON records to insert them, FETCH [query] to read; type help inside for the commands. ' +
        'Reads commands from stdin when it is piped, and then exits with code 1 if any of them failed.',
    );
  withUrlOption(cmd).action(shellAction);
}
