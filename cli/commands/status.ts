import { Option, type Command } from 'commander';
import type { ClusterStatus } from '../../coordinator/cluster-status';
import { formatBytes, formatCount, formatDuration, formatTime, renderTable, truncate } from '../format';
import { clientFor, withUrlOption } from '../http-client';

/** Queue states shown (in this order); the others are in `--json`. */
const QUEUE_STATES = ['active', 'waiting', 'delayed', 'failed', 'completed'] as const;

const num = (n: number | null | undefined) => (n === null || n === undefined ? undefined : n);

/**
 * The one-screen text of `dstore status`: a summary line, then workers, coordinators,
 * dead letters and queues, each as an aligned table cut to `width`. Pure, so the exact
 * output is unit-tested.
 */
export function renderStatus(s: ClusterStatus, width = 120): string[] {
  const out: string[] = [];
  const live = s.workers.filter((w) => w.live).length;
  const liveCoords = s.coordinators.filter((c) => c.live).length;
  const title = `dstore status  prefix ${s.prefix}  via ${s.coordinator}  at ${formatTime(s.at)}`;
  out.push(truncate(title, width));
  out.push(
    truncate(
      `workers ${live}/${s.workers.length} live  coordinators ${liveCoords}/${s.coordinators.length} live  tables ${formatCount(s.tables)}  chunks ${formatCount(s.chunks)}  ` +
        `under-replicated ${formatCount(s.underReplicated)}  open POSTs ${formatCount(s.openPosts)}  dead letters ${formatCount(s.deadLetters.count)}`,
      width,
    ),
  );
  if (s.incomplete.length > 0)
    out.push(
      truncate(
        `warning: no answer in time from Redis for: ${s.incomplete.join(', ')} (their figures show as 0)`,
        width,
      ),
    );
  const m = s.redisMemory;
  if (m) {
    const of =
      m.maxBytes > 0
        ? ` of ${formatBytes(m.maxBytes)} maxmemory (${Math.round(m.usedRatio * 100)} %)`
        : ' (no maxmemory)';
    out.push(truncate(`redis memory ${formatBytes(m.usedBytes)}${of}`, width));
    if (m.warning) out.push(truncate(`warning: ${m.warning}`, width));
  }
  out.push('', 'WORKERS');
  if (s.workers.length === 0) {
    out.push('  no workers have registered (start one with: dstore worker)');
  } else {
    const t = renderTable(
      [
        'id',
        'live',
        'ready',
        'state',
        'rows',
        'chunks',
        'shard',
        'indexes',
        'stream',
        'pending',
        'lag',
        'heartbeat',
        'host',
      ],
      s.workers.map((w) => [
        w.id,
        w.live ? 'yes' : 'no',
        w.ready ? 'yes' : 'no',
        // A shard that cannot store is the first thing an operator must see.
        w.storage && w.storage !== 'ok' ? `${w.state}, disk ${w.storage}` : w.state,
        num(w.rows),
        num(w.chunks),
        w.shardBytes === null ? '-' : formatBytes(w.shardBytes),
        !w.indexes
          ? '-'
          : w.indexes.failed > 0
            ? `${w.indexes.ready}, ${w.indexes.failed} failed`
            : String(w.indexes.ready),
        num(w.stream?.length),
        num(w.stream?.pending),
        num(w.stream?.lag ?? undefined),
        `${formatDuration(w.heartbeatAgeMs)} ago`,
        w.host && w.pid ? `${w.host}:${w.pid}` : '-',
      ]),
      { maxWidth: width - 2 },
    );
    out.push(...t.lines.map((l) => '  ' + l));
  }
  out.push('', 'COORDINATORS');
  if (s.coordinators.length === 0) {
    out.push('  none');
  } else {
    const t = renderTable(
      ['id', 'live', 'heartbeat', 'reply stream'],
      s.coordinators.map((c) => [
        c.id + (c.id === s.coordinator ? ' (this)' : ''),
        c.live ? 'yes' : 'no',
        `${formatDuration(c.heartbeatAgeMs)} ago`,
        c.replyStreamLength,
      ]),
      { maxWidth: width - 2 },
    );
    out.push(...t.lines.map((l) => '  ' + l));
  }
  out.push('', `DEAD LETTERS (${formatCount(s.deadLetters.count)})`);
  if (s.deadLetters.recent.length === 0) {
    out.push('  none');
  } else {
    const t = renderTable(
      ['id', 'worker', 'entry', 'reason'],
      s.deadLetters.recent.map((d) => [d.id, d.worker, d.entry, d.reason]),
      { maxWidth: width - 2 },
    );
    out.push(...t.lines.map((l) => '  ' + l));
  }
  out.push('', 'QUEUES');
  const queues = Object.entries(s.queues);
  if (queues.length === 0) {
    out.push('  none');
  } else {
    const t = renderTable(
      ['queue', ...QUEUE_STATES],
      queues.map(([name, c]) => [name, ...QUEUE_STATES.map((st) => c[st] ?? 0)]),
      { maxWidth: width - 2 },
    );
    out.push(...t.lines.map((l) => '  ' + l));
  }
  return out;
}

/** `dstore status [--watch [--interval S]] [--json]`. */
export function registerStatusCommand(program: Command): void {
  const cmd = program
    .command('status')
    .summary('one screen of cluster state: workers, streams, dead letters, queues')
    .description(
      'show workers (live, ready, rows, chunks, shard size, ops stream length / pending / lag, last heartbeat), coordinators, ' +
        'dead letters, under-replicated chunks and job queues, as the coordinator reads them from Redis (GET /status)',
    )
    .option('--json', 'print the status as JSON (for scripts) instead of text')
    .option('-w, --watch', 'redraw the screen every --interval seconds until Ctrl-C')
    .addOption(
      new Option('--interval <seconds>', 'seconds between redraws with --watch').default('2').argParser(parseInterval),
    );
  withUrlOption(cmd).action(async (o: { json?: boolean; watch?: boolean; interval: number | string }, c: Command) => {
    const client = clientFor(c);
    const interval = typeof o.interval === 'number' ? o.interval : parseInterval(o.interval);
    const once = async (): Promise<string> => {
      const s = await client.request<ClusterStatus>('GET', '/status');
      return o.json ? JSON.stringify(s, null, 2) : renderStatus(s, process.stdout.columns || 120).join('\n');
    };
    if (!o.watch) {
      process.stdout.write((await once()) + '\n');
      return;
    }
    const tty = process.stdout.isTTY === true;
    for (;;) {
      let text: string;
      try {
        text = await once();
      } catch (e) {
        // In watch mode a failed look is shown and retried: the coordinator may be restarting.
        text = `dstore: ${(e as Error).message} (retrying every ${interval}s)`;
      }
      // Home + clear screen on a terminal; in a pipe, frames are separated by a blank line.
      process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n\n`);
      await new Promise((r) => setTimeout(r, interval * 1000));
    }
  });
}

function parseInterval(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.2 || n > 3600)
    throw new Error(`--interval must be a number of seconds from 0.2 to 3600, got ${JSON.stringify(v)}`);
  return n;
}
