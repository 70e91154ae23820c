import Redis, { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { ClusterNode } from './config';
import type { Logger } from './logger';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The role of a connection decides its failure behaviour. */
export type ConnectionRole =
  /** Ordinary commands; queued while reconnecting, retried a few times. */
  | 'command'
  /** A blocking reader (XREADGROUP/XREAD BLOCK): holds the whole connection, never times out a request. */
  | 'blocking'
  /** Pub/sub subscriber: can do nothing but subscribe. */
  | 'subscriber';

/** Options for {@link createRedis}. */
export interface ConnectionOptions {
  /** redis:// or rediss:// URL; on a cluster it still gives user, password and TLS. */
  url: string;
  /** Redis Cluster seed nodes; when given the connection is an ioredis Cluster. */
  clusterNodes?: ClusterNode[];
  /** Shown in `CLIENT LIST` as `<prefix>:<name>` so operators see who is who. */
  name: string;
  role: ConnectionRole;
  /** PEM of the CA that signed the server certificate (rediss:// only; `REDIS_TLS_CA_FILE`). */
  tlsCa?: string;
}

/** Scripts in common/lua, registered on every command connection. */
export interface DstoreCommands {
  heartbeat(workersKey: string, statusKey: string, id: string, status: string): Promise<number>;
  /** numKeys, then KEYS, then ARGV (see common/lua/register-chunk.lua). */
  registerChunk(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  /** numKeys, then KEYS, then ARGV (see common/lua/unregister-chunks.lua). */
  unregisterChunks(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  beginCommit(openPosts: string, post: string): Promise<number>;
  touch(zset: string, id: string): Promise<number>;
  /**
   * Records a chunk's `_id`s in the id index; returns id, holder pairs already held by another chunk
   * (reserve-ids-1.lua).
   */
  reserveIds(index: string, chunk: string, ...ids: string[]): Promise<string[]>;
  /**
   * Moves ids from a stale holder to `chunk`; returns id, holder pairs that changed meanwhile,
   * `~<post>` for ids an upsert POST marked (take-ids-2.lua).
   */
  takeIds(index: string, upserting: string, chunk: string, ...idHolderPairs: string[]): Promise<string[]>;
  /** Marks the ids an upsert POST rewrites, all or none; returns what stopped it (mark-upserts-2.lua). */
  markUpserts(index: string, upserting: string, post: string, ...idHolderPairs: string[]): Promise<string[]>;
  /** Removes an upsert POST's marks (unmark-upserts-1.lua). */
  unmarkUpserts(upserting: string, post: string, ...ids: string[]): Promise<number>;
  /** numKeys, then KEYS, then ARGV (see common/lua/set-placement.lua): compare-and-set of a chunk's placement. */
  setPlacement(numKeys: number, ...keysAndArgs: string[]): Promise<number>;
  /** Sets a hash field only if it still holds `expected`: 1, else 0 (common/lua/hset-if-1.lua). */
  hsetIf(hash: string, field: string, expected: string, value: string): Promise<number>;
  /** Deletes a lock only if it still holds `token` (common/lua/release-lock-1.lua). */
  releaseLock(lock: string, token: string): Promise<number>;
  /** Extends a lock's lease only if it still holds `token` (common/lua/renew-lock-1.lua). */
  renewLock(lock: string, token: string, leaseMs: number): Promise<number>;
  /**
   * Moves at most `count` staged change events of a write into the table's change stream;
   * returns how many are left (common/lua/move-changes-2.lua).
   */
  moveChanges(staged: string, stream: string, count: string, maxLen: string, minId: string): Promise<number>;
  /** Publishes a FETCH/DIGEST with the worker's read fence spliced in (common/lua/publish-fenced-1.lua). */
  publishFenced(workerOps: string, channel: string, head: string, rest: string, sharded: '0' | '1'): Promise<number>;
  /** Records the shard a worker serves; a new one forgets the worker's chunks (common/lua/lose-shard-4.lua). */
  loseShard(
    shards: string,
    workerChunks: string,
    chunks: string,
    underReplicated: string,
    worker: string,
    expected: string,
    record: string,
    dueMs: string,
  ): Promise<(number | string)[]>;
}

/**
 * A command connection to a single Redis or to a Redis Cluster. Typed as `Redis` since
 * ioredis' Cluster offers the same command methods; code that must differ asks
 * {@link isCluster}.
 */
export type DstoreRedis = Redis & DstoreCommands;

/** Whether a connection talks to a Redis Cluster. */
export function isCluster(conn: Redis | Cluster): boolean {
  return (conn as { isCluster?: boolean }).isCluster === true;
}

const LUA_DIR = path.resolve(__dirname, '..', '..', 'common', 'lua');

/** Loads `name-N.lua` (N = number of keys) or `name.lua` (keys counted per call) once. */
function loadScripts(): { name: string; numberOfKeys?: number; lua: string }[] {
  return fs
    .readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((f) => {
      const m = /^([a-z-]+?)(?:-(\d+))?\.lua$/.exec(f);
      if (!m) throw new Error(`lua script ${f} must be named <command>[-<numberOfKeys>].lua`);
      const name = m[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      return {
        name,
        numberOfKeys: m[2] === undefined ? undefined : Number(m[2]),
        lua: fs.readFileSync(path.join(LUA_DIR, f), 'utf8'),
      };
    });
}

let scripts: ReturnType<typeof loadScripts> | undefined;

/** Longest pause between two reconnect attempts (ms). */
export const RETRY_CAP_MS = 2000;

/** The pause before reconnect attempt `times` (1, 2, …): 100 ms doubling up to {@link RETRY_CAP_MS}. */
export function retryDelay(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 6), RETRY_CAP_MS);
}

/** A Redis URL fit for a log line or a terminal: the password, if any, is `***`. */
export function maskRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
  }
}

/**
 * Attempts logged one by one, at the capped delay too; after these, while Redis stays away,
 * one line per {@link RETRY_QUIET_MS} (a day-long outage is not 43,200 lines per process).
 */
const RETRY_LOUD_ATTEMPTS = 10;
const RETRY_QUIET_MS = 30_000;

interface Outage {
  /** Highest attempt already logged (another connection of the process at the same attempt says nothing). */
  attempt: number;
  since: number;
  lastLine: number;
}

let retryLog: Logger | undefined;
const outages = new Map<string, Outage>();

/**
 * Makes every connection of this process log its reconnect attempts on `log` (entry points
 * call it with the process's logger; without it nothing is logged): one warn line per attempt
 * with the URL, password masked, the reason and the next delay, and an info line once Redis
 * answers again. The several connections of a process to one Redis give one line per attempt.
 */
export function logRedisRetries(log: Logger | undefined): void {
  retryLog = log?.child({ component: 'redis' });
  outages.clear();
}

/** Called by the retry strategy: one warn line for attempt `times` unless said already or in the quiet phase. */
function noteRetry(
  target: string,
  fields: Record<string, unknown>,
  times: number,
  delayMs: number,
  reason: string | undefined,
): void {
  if (!retryLog) return;
  const now = Date.now();
  let o = outages.get(target);
  if (!o) outages.set(target, (o = { attempt: 0, since: now, lastLine: 0 }));
  if (times <= o.attempt) return;
  o.attempt = times;
  if (times > RETRY_LOUD_ATTEMPTS && now - o.lastLine < RETRY_QUIET_MS) return;
  o.lastLine = now;
  const quiet =
    times >= RETRY_LOUD_ATTEMPTS
      ? `; still trying every ${RETRY_CAP_MS} ms, next line in ${RETRY_QUIET_MS / 1000} s unless it answers`
      : '';
  retryLog.warn(
    { ...fields, attempt: times, retryInMs: delayMs, downMs: now - o.since, reason },
    `cannot reach ${target}${reason ? ` (${reason})` : ''}: attempt ${times}, retrying in ${delayMs} ms${quiet}`,
  );
}

/** Called when a connection is ready: ends the outage of its target, with one info line if one was logged. */
function noteReady(target: string, fields: Record<string, unknown>): void {
  const o = outages.get(target);
  if (!o) return;
  outages.delete(target);
  retryLog?.info(
    { ...fields, attempts: o.attempt, downMs: Date.now() - o.since },
    `${target} answers again after ${o.attempt} attempt(s)`,
  );
}

/**
 * Opens a named connection from a redis:// or rediss:// URL. Reconnects forever with
 * capped backoff: a Redis restart must not take dstore processes down with it. Each
 * attempt is logged where {@link logRedisRetries} says.
 */
export function createRedis(opts: ConnectionOptions): DstoreRedis {
  scripts ??= loadScripts();
  // What the retry lines name: the URL (password masked), or a cluster's seed nodes.
  const nodes = opts.clusterNodes?.map((n) => `${n.host}:${n.port}`).join(',');
  const fields = { redis: maskRedisUrl(opts.url), ...(nodes ? { clusterNodes: nodes } : {}) };
  const target = nodes ? `redis cluster at ${nodes}` : `redis at ${fields.redis}`;
  let lastError: string | undefined;
  const retryStrategy = (times: number, reason?: Error) => {
    const delay = retryDelay(times);
    noteRetry(target, fields, times, delay, reason?.message ?? lastError);
    return delay;
  };
  const base: RedisOptions = {
    connectionName: opts.name,
    retryStrategy,
    // Blocking readers and subscribers wait as long as it takes; commands give up after a
    // few reconnects so a caller sees an error instead of hanging.
    maxRetriesPerRequest: opts.role === 'command' ? 20 : null,
    enableAutoPipelining: opts.role === 'command',
    // ioredis turns TLS on for rediss:// by itself; this only adds the private CA.
    ...(opts.tlsCa && opts.url.startsWith('rediss://') ? { tls: { ca: opts.tlsCa } } : {}),
    // Auto-pipelining routes by a command's first argument, which for a script with a
    // variable key count is the count, not a key: on a cluster it would pick a wrong node.
    autoPipeliningIgnoredCommands: scripts.filter((s) => s.numberOfKeys === undefined).map((s) => s.name),
  };
  const conn = (
    opts.clusterNodes ? createCluster(opts.url, opts.clusterNodes, opts.role, base) : new Redis(opts.url, base)
  ) as DstoreRedis;
  // The reason the next retry line gives. (Listening also keeps ioredis from printing
  // "Unhandled error event" for it: the retry line says it, on the process's logger.)
  conn.on('error', (e: Error) => (lastError = e.message));
  conn.on('ready', () => {
    lastError = undefined;
    noteReady(target, fields);
  });
  if (opts.role === 'command') {
    for (const s of scripts) conn.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
  return conn;
}

/**
 * A Cluster client: credentials and TLS from the URL apply to every node. Slots are
 * refreshed on MOVED and every few seconds, so resharding and failover are followed.
 */
function createCluster(url: string, nodes: ClusterNode[], role: ConnectionRole, base: RedisOptions): Cluster {
  const u = new URL(url);
  const redisOptions: RedisOptions = {
    ...base,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? (base.tls ?? {}) : undefined,
  };
  const options: ClusterOptions = {
    redisOptions,
    clusterRetryStrategy: base.retryStrategy,
    enableAutoPipelining: base.enableAutoPipelining,
    autoPipeliningIgnoredCommands: base.autoPipeliningIgnoredCommands,
    // A sharded channel lives on the node owning its slot: SSUBSCRIBE there, so FETCH
    // traffic is not broadcast over the cluster bus to every node.
    shardedSubscribers: role === 'subscriber',
    slotsRefreshInterval: 5000,
  };
  return new Cluster(nodes, options);
}

/** Publishes on a channel: SPUBLISH on a cluster (sharded pub/sub), PUBLISH on a single Redis. */
export function publish(conn: Redis, channel: string, payload: string): Promise<number> {
  return isCluster(conn)
    ? ((conn as unknown as Cluster).spublish(channel, payload) as Promise<number>)
    : conn.publish(channel, payload);
}

/**
 * Subscribes `sub` (a subscriber connection) to one channel, sharded on a cluster, and
 * calls `onMessage` with each payload. Returns a function that unsubscribes.
 */
export async function subscribe(
  sub: Redis,
  channel: string,
  onMessage: (payload: string) => void,
): Promise<() => Promise<void>> {
  const sharded = isCluster(sub);
  const event = sharded ? 'smessage' : 'message';
  const listener = (ch: string, payload: string) => {
    if (ch === channel) onMessage(payload);
  };
  sub.on(event, listener);
  // A SUBSCRIBE written before the connection is ready puts it in subscriber mode before
  // ioredis' ready check (INFO) runs; the check then fails, the connection is dropped and
  // comes back without the subscription: the worker silently never hears a FETCH.
  if (sub.status !== 'ready') await new Promise<void>((resolve) => sub.once('ready', () => resolve()));
  if (sharded) await (sub as unknown as Cluster).ssubscribe(channel);
  else await sub.subscribe(channel);
  return async () => {
    sub.off(event, listener);
    await (sharded ? (sub as unknown as Cluster).sunsubscribe(channel) : sub.unsubscribe(channel)).catch(
      () => undefined,
    );
  };
}

/** Resolves with `p`, or with undefined after `ms` (the work goes on, unawaited). */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    p.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    );
  });
}

/** Closes connections, ignoring ones already closed; never waits long for an unreachable Redis. */
export async function closeAll(...conns: (Redis | Cluster | undefined)[]): Promise<void> {
  await Promise.all(
    conns.map(async (c) => {
      if (!c || c.status === 'end') return;
      const quit = c.quit().then(
        () => true,
        () => false,
      );
      if (!(await withTimeout(quit, 1000))) c.disconnect();
    }),
  );
}

/** Redis `TIME` (`[seconds, microseconds]` as text) in milliseconds. */
export function timeToMs(time: readonly (string | number)[]): number {
  return Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
}

/** The Redis server's clock, in milliseconds: the one clock every process agrees on. */
export async function redisNow(cmd: Redis): Promise<number> {
  return timeToMs(await cmd.time());
}
