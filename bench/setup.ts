/**
 * Bench plumbing on top of the test harness: settings from the environment, a cluster with
 * bench-sized timeouts (and optional CPU profiles), and clean shutdown of everything started.
 */
import * as path from 'node:path';
import { startCluster, type TestCluster } from '../test/support/cluster';
import { killAllChildren, removeTempRoot } from '../test/support/processes';
import { stopAllRedis, uniquePrefix } from '../test/support/redis';

/** A whole-number setting from the environment, checked. */
export function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    console.error(`${name} must be a whole number >= ${min}, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return Number(raw);
}

/**
 * Starts `workers` workers and a coordinator at replication `replicas` on `redisUrl` under a
 * fresh prefix, and creates `table` (no schema). With BENCH_CPU_PROF=<dir> every child
 * writes a V8 CPU profile there when it exits.
 */
export async function benchCluster(
  redisUrl: string,
  workers: number,
  replicas: number,
  table: string,
): Promise<TestCluster> {
  const env: Record<string, string> = {
    // Generous timeouts: a loaded 2-core machine must not turn a slow answer into a failure.
    DSTORE_HEARTBEAT_MS: '500',
    DSTORE_WORKER_TIMEOUT_MS: '10000',
    DSTORE_FETCH_TIMEOUT_MS: '60000',
    DSTORE_ACK_TIMEOUT_MS: '120000',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
  };
  const prof = process.env.BENCH_CPU_PROF;
  if (prof) process.env.DSTORE_CHILD_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${path.resolve(prof)}`;
  const cluster = await startCluster({ redisUrl, prefix: uniquePrefix(), workers, replicas, env });
  const r = await cluster.api('PUT', `/tables/${table}`, {});
  if (r.status !== 201 && r.status !== 200)
    throw new Error(`creating table ${table} answered ${r.status}: ${JSON.stringify(r.body)}`);
  return cluster;
}

/** Stops every child process and Redis the harness started, and removes the temp files. */
export async function cleanUp(): Promise<void> {
  await killAllChildren();
  await stopAllRedis();
  removeTempRoot();
}

/** Runs `main`, always cleaning up; exits 1 with the error on failure. */
export function run(main: () => Promise<void>): void {
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(1);
    stopping = true;
    void cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  main()
    .then(async () => {
      await cleanUp();
      process.exit(process.exitCode ?? 0);
    })
    .catch(async (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      await cleanUp().catch(() => undefined);
      process.exit(1);
    });
}
