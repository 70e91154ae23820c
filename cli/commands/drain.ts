import { Option, type Command } from 'commander';
import { CliError, clientFor, withUrlOption, type HttpClient } from '../http-client';

/** A drain's progress as `GET /workers/:id/drain` gives it. */
interface DrainStatus {
  worker: string;
  state: 'active' | 'draining' | 'retired';
  chunks: number;
}

/** A rebalance plan as `POST /rebalance` gives it. */
interface RebalancePlan {
  before: Record<string, number>;
  after: Record<string, number>;
  moves: { chunk: string; from: string; to: string }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parseTimeout(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(`--timeout: expected a whole number of seconds, got ${JSON.stringify(raw)}`);
  return n * 1000;
}

/** Polls until `done` returns true or the deadline passes; `done` prints progress. */
async function poll(timeoutMs: number, what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return;
    if (Date.now() > deadline)
      throw new CliError(
        `${what} did not finish within ${timeoutMs / 1000} s; it goes on in the background (check with dstore workers)`,
      );
    await sleep(500);
  }
}

async function waitDrained(client: HttpClient, id: string, timeoutMs: number): Promise<void> {
  let last = -1;
  await poll(timeoutMs, `the drain of ${id}`, async () => {
    const s = await client.request<DrainStatus>('GET', `/workers/${encodeURIComponent(id)}/drain`);
    if (s.state === 'retired') return true;
    if (s.state === 'active') throw new CliError(`worker ${id} is no longer being drained`);
    if (s.chunks !== last) process.stderr.write(`${id}: ${s.chunks} chunk(s) left\n`);
    last = s.chunks;
    return false;
  });
}

/** `dstore worker drain ID [--force] [--no-wait]` (added under the `worker` command). */
export function registerDrainCommand(worker: Command): void {
  const cmd = worker
    .command('drain')
    .description('move every chunk of a live worker to the other workers, then retire it (reads stay exact meanwhile)')
    .argument('<id>', 'worker id (see dstore workers)')
    .option('--force', 'drain even if chunks are left with fewer than DSTORE_REPLICAS copies')
    .option('--no-wait', 'return once the drain has started')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the drain').default('600'));
  withUrlOption(cmd).action(async (id: string, o: { force?: boolean; wait: boolean; timeout: string }, c: Command) => {
    const timeoutMs = parseTimeout(o.timeout);
    const client = clientFor(c);
    const started = Date.now();
    const s = await client.request<DrainStatus>('POST', `/workers/${encodeURIComponent(id)}/drain`, {
      force: o.force === true,
    });
    process.stdout.write(`draining ${id}: ${s.chunks} chunk(s) to move\n`);
    if (!o.wait) return;
    await waitDrained(client, id, timeoutMs);
    process.stdout.write(
      `${id} drained and retired in ${((Date.now() - started) / 1000).toFixed(1)} s; its process holds no chunks and can be stopped\n`,
    );
  });
}

/** `dstore rebalance [--dry-run] [--no-wait]`. */
export function registerRebalanceCommand(program: Command): void {
  const cmd = program
    .command('rebalance')
    .description(
      'even out chunk counts across live workers by moving chunks from the fullest to the emptiest (reads stay exact meanwhile)',
    )
    .option('--dry-run', 'print the plan without moving anything')
    .option('--no-wait', 'return once the moves are queued')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the moves').default('600'));
  withUrlOption(cmd).action(async (o: { dryRun?: boolean; wait: boolean; timeout: string }, c: Command) => {
    const timeoutMs = parseTimeout(o.timeout);
    const client = clientFor(c);
    const started = Date.now();
    const plan = await client.request<RebalancePlan>('POST', '/rebalance', { dryRun: o.dryRun === true });
    const counts = (m: Record<string, number>) =>
      Object.entries(m)
        .map(([w, n]) => `${w}=${n}`)
        .join(' ');
    process.stdout.write(
      `chunks per worker: ${counts(plan.before)}\n${o.dryRun ? 'would move' : 'moving'} ${plan.moves.length} chunk(s); then: ${counts(plan.after)}\n`,
    );
    if (o.dryRun || !o.wait || plan.moves.length === 0) return;
    await poll(
      timeoutMs,
      'the rebalance',
      async () => (await client.request<{ pending: number }>('GET', '/rebalance')).pending === 0,
    );
    process.stdout.write(`rebalanced in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });
}
