import type { Command } from 'commander';
import { CliError, clientFor, tablePath, withUrlOption, type HttpClient } from '../http-client';

/** The path of one record: `/tables/NAME/records/ID`, both escaped. */
export function recordPath(table: string, id: string): string {
  return tablePath(table, `/records/${encodeURIComponent(id)}`);
}

/** One record by `_id` (GET /tables/:name/records/:id); a missing one is a CliError naming table and id. */
export async function getRecord(client: HttpClient, table: string, id: string): Promise<Record<string, unknown>> {
  if (id === '')
    throw new CliError(
      "the _id to get is empty; give the record's _id, e.g. dstore get events 01J0Z3V6Q2X7M8K4N5P9R1S2T3",
    );
  return client.request<Record<string, unknown>>('GET', recordPath(table, id));
}

/** `dstore get TABLE ID`: one record as one line of JSON; exit 1 with one line when there is none. */
export function registerGetCommand(program: Command): void {
  const cmd = program
    .command('get')
    .summary('print one record by its _id')
    .description(
      'print the record whose _id is ID as one line of JSON (as fetch prints rows); when the table has none, one line on stderr and exit code 1',
    )
    .argument('<table>', 'table to read')
    .argument('<id>', "the record's _id");
  withUrlOption(cmd).action(async (table: string, id: string, _o: unknown, c: Command) => {
    const row = await getRecord(clientFor(c), table, id);
    process.stdout.write(JSON.stringify(row) + '\n');
  });
}
