import type { Command } from 'commander';
import { CliError, clientFor, tablePath, withUrlOption } from '../http-client';
import { parseJsonObjectFlag } from './fetch';
import { FETCH_TERMS } from '../cli-terms';
import { counted, pendingNote } from '../format';

/** The body of PATCH /tables/:name/records from update's flags; both flags are required. */
export function buildUpdate(o: { where?: string; set?: string }): {
  where: Record<string, unknown>;
  set: Record<string, unknown>;
} {
  if (o.where === undefined) throw new CliError(`update needs --where; to change every row pass --where '{}'`);
  if (o.set === undefined) throw new CliError(`update needs --set, e.g. --set '{"status":"done"}'`);
  return { where: parseJsonObjectFlag('--where', o.where), set: parseJsonObjectFlag('--set', o.set) };
}

/** `dstore update TABLE --where JSON --set JSON`. */
export function registerUpdateCommand(program: Command): void {
  const cmd = program
    .command('update')
    .description('change fields of the rows that match a filter')
    .argument('<table>', 'table to update')
    .option('--where <json>', "filter selecting the rows (required; '{}' for every row)")
    .option('--set <json>', 'fields to set, as a JSON object, e.g. \'{"status":"done"}\' (required)');
  withUrlOption(cmd).action(async (table: string, o: { where?: string; set?: string }, c: Command) => {
    const body = buildUpdate(o);
    const r = await clientFor(c, FETCH_TERMS).request<{ updated: number; pendingWorkers?: string[] }>(
      'PATCH',
      tablePath(table, '/records'),
      body,
    );
    process.stdout.write(`updated ${counted(r.updated, 'row')}${pendingNote(r.pendingWorkers)}\n`);
  });
}
