import { Option, type Command } from 'commander';
import type { IndexList } from '../../common/api';
import { renderTable } from '../format';
import { CliError, clientFor, tablePath, withUrlOption } from '../http-client';

export type { IndexList };

/** `--fields a,b`: the field names, in order (a name holding a comma needs the HTTP API). */
export function parseIndexFields(raw: string): string[] {
  const fields = raw.split(',').map((f) => f.trim());
  if (fields.some((f) => f === ''))
    throw new CliError(
      `--fields must be field names separated by commas, e.g. --fields city,amount; got ${JSON.stringify(raw)}`,
    );
  return fields;
}

/**
 * The text of `dstore index list`: one row per index with its fields and, per worker, its
 * state (`ready`, `building`, `failed: <why>`). Pure, so the exact output is unit-tested.
 */
export function renderIndexes(list: IndexList, width = 120): string[] {
  if (list.indexes.length === 0) return [`table ${list.table} has no indexes`];
  const rows = list.indexes.map((ix) => {
    const states = Object.entries(ix.workers).map(
      ([w, s]) => `${w}: ${s.state}${s.state === 'failed' && s.error ? ` (${s.error})` : ''}`,
    );
    return [ix.name, ix.fields.join(', '), states.join('; ') || 'no workers'];
  });
  return renderTable(['index', 'fields', 'workers'], rows, { maxWidth: width }).lines;
}

/** `dstore index create|list|drop`: a table's secondary indexes. */
export function registerIndexCommand(program: Command): void {
  const group = program
    .command('index')
    .summary("create, list or drop a table's secondary indexes")
    .description(
      'secondary indexes, built on every worker for every chunk of the table; filters on an indexed field ' +
        '(equality, $in, ranges, in the top-level AND) use them. Not unique. Creating and dropping needs the admin role',
    );

  const create = group
    .command('create <table> <index>')
    .description('declare an index and build it on every worker (a worker that is down builds it when it is back)')
    .requiredOption('--fields <fields>', 'the fields it orders by, leading first, separated by commas: city,amount');
  withUrlOption(create).action(async (table: string, index: string, o: { fields: string }, c: Command) => {
    const fields = parseIndexFields(o.fields);
    const r = await clientFor(c, { fields: '--fields', index: '<index>' }).request<{ created: boolean }>(
      'PUT',
      tablePath(table, `/indexes/${encodeURIComponent(index)}`),
      { fields },
    );
    process.stdout.write(`${r.created ? 'created' : 'kept'} index ${index} on ${table} (${fields.join(', ')})\n`);
  });

  const list = group
    .command('list <table>')
    .description("list a table's indexes, their fields and their state on every worker")
    .addOption(
      new Option('--format <format>', 'table or json (the API answer)').choices(['table', 'json']).default('table'),
    );
  withUrlOption(list).action(async (table: string, o: { format: 'table' | 'json' }, c: Command) => {
    const r = await clientFor(c).request<IndexList>('GET', tablePath(table, '/indexes'));
    process.stdout.write(
      (o.format === 'json' ? JSON.stringify(r, null, 2) : renderIndexes(r, process.stdout.columns || 120).join('\n')) +
        '\n',
    );
  });

  const drop = group.command('drop <table> <index>').description('drop an index on every worker');
  withUrlOption(drop).action(async (table: string, index: string, _o: unknown, c: Command) => {
    await clientFor(c).request('DELETE', tablePath(table, `/indexes/${encodeURIComponent(index)}`));
    process.stdout.write(`dropped index ${index} on ${table}\n`);
  });
}
