import type { Command } from 'commander';
import * as readline from 'node:readline';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';
import { reportTrailer, runQuery, writeStdout, type QueryBody } from './fetch';
import type { PostResult } from './post';
import { createTable, listTables } from './table';

const HELP = [
  'use TABLE            work on TABLE (created, schemaless, if it does not exist)',
  '{"a": 1, ...}        insert one JSON record into the current table',
  '[{...}, {...}]       insert a JSON array of records',
  'FETCH                print every row of the current table, one JSON object a line',
  'FETCH {query}        print a query\'s answer, e.g. FETCH {"where": {"a": {"$gt": 1}}, "limit": 10}',
  '                     (keys: where, fields, sort, limit, aggregate, groupBy, partial)',
  'tables               list the tables',
  'help                 this list',
  'exit, quit           leave (so does end of input or Ctrl-D)',
];

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
      case 'fetch':
        await this.fetch(rest);
        return true;
      default:
        throw new CliError(`unknown command ${JSON.stringify(word)}; type help for the list`);
    }
  }

  private async use(name: string): Promise<void> {
    if (name === '' || /\s/.test(name)) throw new CliError('usage: use TABLE');
    const { tables } = await this.client.request<{ tables: { name: string }[] }>('GET', '/tables');
    let note = '';
    if (!tables.some((t) => t.name === name)) {
      const r = await createTable(this.client, name);
      if (r.created) note = ' (created)';
    }
    this.table = name;
    await writeStdout(`using ${name}${note}\n`);
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
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CliError('FETCH takes a JSON query object, e.g. FETCH {"where": {"a": 1}}');
      query = v as QueryBody;
    }
    let rows = 0;
    const trailer = await runQuery(this.client, table, query, async (lines) => {
      rows += lines.length;
      await writeStdout(lines.join('\n') + '\n');
    });
    reportTrailer(trailer, rows);
    if (this.interactive) await writeStdout(`(${rows} ${rows === 1 ? 'row' : 'rows'})\n`);
  }
}

async function shellAction(_o: unknown, cmd: Command): Promise<void> {
  const client = clientFor(cmd);
  const interactive = process.stdin.isTTY === true;
  // Without a terminal there is no prompt and no echo: piped input gives only the answers.
  const rl = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive, prompt: 'dstore> ' });
  rl.on('SIGINT', () => rl.close());
  const shell = new Shell(client, interactive);
  if (interactive) {
    process.stdout.write(`dstore shell on ${client.baseUrl}; type help for commands\n`);
    rl.prompt();
  }
  for await (const line of rl) {
    let more = true;
    try {
      more = await shell.run(line);
    } catch (e) {
      process.stderr.write(`error: ${(e as Error).message}\n`);
    }
    if (!more) break;
    if (interactive) rl.prompt();
  }
  rl.close();
}

/** `dstore shell`: the interactive console. */
export function registerShellCommand(program: Command): void {
  const cmd = program
    .command('shell')
    .summary('interactive console (use TABLE, JSON records, FETCH)')
    .description('interactive console: use TABLE, type JSON records to insert them, FETCH [query] to read; type help inside for the commands. Reads commands from stdin when it is piped.');
  withUrlOption(cmd).action(shellAction);
}
