import { Option, type Command } from 'commander';
import { formatBytes, formatDuration, renderTable } from '../format';
import { clientFor, withUrlOption } from '../http-client';
import type { WorkerStatus } from '../../common/worker-status';

/** A worker as GET /workers lists it. */
export interface WorkerInfo {
  id: string;
  live: boolean;
  age: number;
  lastSeen: number;
  status?: WorkerStatus;
}

/** The aligned table of `dstore workers`: id, live, state, rows, chunks, shard, heartbeat. */
export function workersTable(workers: WorkerInfo[], maxWidth?: number): string[] {
  if (workers.length === 0) return ['no workers have registered (start one with: dstore worker)'];
  return renderTable(
    ['id', 'live', 'state', 'rows', 'chunks', 'shard', 'heartbeat'],
    workers.map((w) => [
      w.id,
      w.live ? 'yes' : 'no',
      w.status?.state ?? '-',
      w.status?.rows,
      w.status?.chunks,
      w.status ? formatBytes(w.status.shardBytes) : '-',
      `${formatDuration(w.age)} ago`,
    ]),
    { maxWidth },
  ).lines;
}

/** `dstore workers [--format table|json]`. */
export function registerWorkersCommand(program: Command): void {
  const cmd = program
    .command('workers')
    .summary('list workers and their state')
    .description('list the workers the coordinator knows: liveness, state, rows, chunks, shard size, last heartbeat')
    .addOption(
      new Option('--format <format>', 'table (aligned) or json (the array of workers as the API gives it)')
        .choices(['table', 'json'])
        .default('table'),
    );
  withUrlOption(cmd).action(async (o: { format: 'table' | 'json' }, c: Command) => {
    const { workers } = await clientFor(c).request<{ workers: WorkerInfo[] }>('GET', '/workers');
    const out =
      o.format === 'json'
        ? JSON.stringify(workers, null, 2)
        : workersTable(workers, process.stdout.columns || 120).join('\n');
    process.stdout.write(out + '\n');
  });
}
