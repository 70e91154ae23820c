import { Option, type Command } from 'commander';
import type { DeadLetterPage } from '../../coordinator/dead-letters';
import { formatCount, formatTime, renderTable } from '../format';
import { confirmOrRefuse } from '../confirm';
import { CliError, clientFor, withUrlOption } from '../http-client';

const PATH = '/admin/dead-letters';
/** As the API allows (MAX_DEAD_LETTER_LIMIT). */
const MAX_LIMIT = 1000;

/** `--limit`: a whole number from 1 to 1000. */
export function parseDeadLetterLimit(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_LIMIT)
    throw new CliError(`--limit must be a whole number from 1 to ${MAX_LIMIT}, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * The text of `dstore dead-letters list`: a count line, then one row per dead letter,
 * newest first, cut to `width`. Pure, so the exact output is unit-tested.
 */
export function renderDeadLetters(page: DeadLetterPage, width = 120): string[] {
  if (page.total === 0) return ['no dead letters'];
  const shown = page.deadLetters.length;
  const head = `${formatCount(page.total)} dead letter(s)${shown < page.total ? `; the newest ${formatCount(shown)} shown (more with --limit)` : ''}`;
  const t = renderTable(
    ['id', 'time', 'worker', 'type', 'entry', 'reason'],
    page.deadLetters.map((d) => [d.id, formatTime(d.at), d.worker, d.type ?? '-', d.entryId, d.reason]),
    { maxWidth: width },
  );
  return [head, ...t.lines];
}

/** The id just after `id` in stream order: `before` it means "up to and including `id`". */
export function nextStreamId(id: string): string {
  const [ms, seq = '0'] = id.split('-');
  return `${ms}-${BigInt(seq) + 1n}`;
}

/** `dstore dead-letters list [--limit N] [--format table|json]` and `dstore dead-letters clear [--yes]`. */
export function registerDeadLettersCommand(program: Command): void {
  const group = program
    .command('dead-letters')
    .summary('list or clear the ops entries workers could not apply')
    .description(
      'the dead-letter stream: ops entries a worker could not decode or refused, each with its reason (needs the admin role). ' +
        'Payloads are never shown: they may hold row data (redis-cli XRANGE on the stream shows them)',
    );

  const list = group
    .command('list')
    .description('list dead letters, newest first: id, time, worker, message type, ops entry id, reason')
    .addOption(new Option('--limit <n>', `how many to list (1-${MAX_LIMIT})`).default('100'))
    .addOption(
      new Option('--format <format>', 'table (aligned) or json (the API answer: {total, deadLetters})')
        .choices(['table', 'json'])
        .default('table'),
    );
  withUrlOption(list).action(async (o: { limit: string; format: 'table' | 'json' }, c: Command) => {
    const limit = parseDeadLetterLimit(o.limit);
    const page = await clientFor(c).request<DeadLetterPage>('GET', `${PATH}?limit=${limit}`);
    const out =
      o.format === 'json'
        ? JSON.stringify(page, null, 2)
        : renderDeadLetters(page, process.stdout.columns || 120).join('\n');
    process.stdout.write(out + '\n');
  });

  const clear = group
    .command('clear')
    .description('delete every dead letter there is now (one added meanwhile stays); asks first unless --yes')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)');
  withUrlOption(clear).action(async (o: { yes?: boolean }, c: Command) => {
    const client = clientFor(c);
    const page = await client.request<DeadLetterPage>('GET', `${PATH}?limit=1`);
    const newest = page.deadLetters[0];
    if (page.total === 0 || !newest) {
      process.stdout.write('no dead letters to clear\n');
      return;
    }
    await confirmOrRefuse(
      o,
      'dead-letters clear',
      `${page.total} dead letter(s)`,
      `delete ${page.total} dead letter(s), the newest ${newest.id}? [y/N] `,
    );
    // Up to the newest one counted: entries that arrive meanwhile are not deleted unseen.
    const { deleted } = await client.request<{ deleted: number }>(
      'DELETE',
      `${PATH}?before=${encodeURIComponent(nextStreamId(newest.id))}`,
    );
    process.stdout.write(`deleted ${deleted} dead letter(s)\n`);
  });
}
