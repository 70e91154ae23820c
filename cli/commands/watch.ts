import { Option, type Command } from 'commander';
import type { ChangeEvent } from '../../common/changes';
import { truncate } from '../format';
import { CliError, clientFor, tablePath, withUrlOption } from '../http-client';

/** One event as `dstore watch --format table` prints it: token, op, _id and the row, on one line. */
export function eventLine(e: ChangeEvent, width = 120): string {
  const head = `${e.token}  ${e.op.padEnd(6)}  ${e._id}`;
  return e.row === undefined ? head : truncate(`${head}  ${JSON.stringify(e.row)}`, width);
}

/** `dstore watch <table>`: a table's committed changes as they happen. */
export function registerWatchCommand(program: Command): void {
  const cmd = program
    .command('watch')
    .summary("follow a table's committed changes")
    .description(
      "print a table's committed changes as they happen, one event per row, in its write order (the table needs " +
        'changes on: dstore table create --changes, or dstore table changes TABLE on); runs until interrupted',
    )
    .argument('<table>', 'table to watch')
    .option('--after <token>', 'start after this event (the token of the last one seen), else at the end')
    .addOption(
      new Option('--format <format>', 'ndjson (one event as JSON per line) or table (token, op, _id, row)')
        .choices(['ndjson', 'table'])
        .default('ndjson'),
    );
  withUrlOption(cmd).action(async (table: string, o: { after?: string; format: 'ndjson' | 'table' }, c: Command) => {
    const client = clientFor(c, { after: '--after' });
    const q = o.after === undefined ? '' : `?after=${encodeURIComponent(o.after)}`;
    const width = process.stdout.columns || 120;
    for await (const lines of client.streamLineBatches(tablePath(table, `/changes${q}`), undefined, 'GET')) {
      let out = '';
      for (const line of lines) {
        const e = JSON.parse(line) as ChangeEvent & { _error?: { message: string } };
        if (e._error) throw new CliError(`watching ${table} failed: ${e._error.message}`);
        out += (o.format === 'ndjson' ? line : eventLine(e, width)) + '\n';
      }
      process.stdout.write(out);
    }
  });
}
