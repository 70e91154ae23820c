/**
 * Bench plumbing on top of the test harness: settings from the environment, a cluster with
 * bench-sized timeouts (and optional CPU profiles), and clean shutdown of everything started.
 */
import * as path from 'node:path';
import { makeKeys, OPS_GROUP } from '../common/keys';
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

/** An XINFO reply (`[name, value, name, value, …]`) as an object. */
function fields(flat: unknown[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[String(flat[i])] = flat[i + 1];
  return o;
}

/**
 * Resolves once every worker has been delivered and has acked every entry of its ops
 * stream: a POST answers after DSTORE_MIN_REPLICAS acks, so at R=2 a replica may still be
 * writing, and the phase's CPU must include that. Asks Redis directly (XINFO), which costs
 * the measured processes next to nothing, unlike GET /status; compares ids rather than
 * reading `lag`, which Redis 6 lacks. Throws after `timeoutMs`.
 */
export async function settled(cluster: TestCluster, timeoutMs = 60_000): Promise<void> {
  const keys = makeKeys(cluster.opts.prefix);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let busy = 0;
    for (const id of cluster.workers.keys()) {
      const key = keys.workerOps(id);
      if ((await cluster.redis.exists(key)) === 0) continue;
      const stream = fields((await cluster.redis.xinfo('STREAM', key)) as unknown[]);
      const group = ((await cluster.redis.xinfo('GROUPS', key)) as unknown[][])
        .map(fields)
        .find((g) => g.name === OPS_GROUP);
      if (group?.pending !== 0 || group['last-delivered-id'] !== stream['last-generated-id']) busy++;
    }
    if (busy === 0) return;
    if (Date.now() > deadline) throw new Error(`${busy} workers still had ops to apply after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
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
