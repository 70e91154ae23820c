import type { Command } from 'commander';
import { CliError, clientFor, tablePath, withUrlOption } from '../http-client';
import { parseJsonObjectFlag } from './fetch';
import { FETCH_TERMS } from '../cli-terms';
import { counted, pendingNote } from '../format';

/**
 * The body of DELETE /tables/:name/records. `--where` is required so that a forgotten
 * filter never empties a table: every row takes an explicit `--where '{}'`.
 */
export function buildDelete(table: string, o: { where?: string }): { where: Record<string, unknown> } {
  if (o.where === undefined)
    throw new CliError(`delete needs --where; to delete every row of ${table} pass --where '{}'`);
  return { where: parseJsonObjectFlag('--where', o.where) };
}

/** `dstore delete TABLE --where JSON`. */
export function registerDeleteCommand(program: Command): void {
  const cmd = program
    .command('delete')
    .description('delete the rows that match a filter')
    .argument('<table>', 'table to delete from')
    .option('--where <json>', "filter selecting the rows (required; '{}' deletes every row)");
  withUrlOption(cmd).action(async (table: string, o: { where?: string }, c: Command) => {
    const body = buildDelete(table, o);
    const r = await clientFor(c, FETCH_TERMS).request<{ deleted: number; pendingWorkers?: string[] }>(
      'DELETE',
      tablePath(table, '/records'),
      body,
    );
    process.stdout.write(`deleted ${counted(r.deleted, 'row')}${pendingNote(r.pendingWorkers)}\n`);
  });
}
