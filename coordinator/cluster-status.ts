import { OPS_GROUP, type Keys } from '../common/keys';
import type { Cluster } from 'ioredis';
import { isCluster, timeToMs, type DstoreRedis } from '../common/redis';
import type { WorkerCounters, WorkerStatus } from '../common/worker-status';
import type { WorkerDirectory } from './membership';

/** A worker's ops stream as its consumer group sees it (`XLEN`, `XINFO GROUPS`). */
export interface OpsStreamInfo {
  key: string;
  /** Entries in the stream (acked ones stay until trimmed). */
  length: number;
  /** Delivered to the worker, not yet acked. */
  pending: number;
  /** Not yet delivered; null when Redis cannot tell (after entries were deleted). */
  lag: number | null;
  /** Id of the last entry delivered to the group. */
  lastDeliveredId: string;
}

/** One worker in {@link ClusterStatus}. */
export interface WorkerStatusView {
  id: string;
  /** Heartbeat recent, state `ready` and storage `ok`. */
  live: boolean;
  ready: boolean;
  state: string;
  /**
   * Whether its shard can store: `ok`, `full`, `read-only` or `io-error` (then it takes no chunks and answers no
   * reads).
   */
  storage: string;
  /** The storage error, while `storage` is not `ok`. */
  storageError: string | null;
  /** The shard (SQLite file) it serves. */
  shard: string | null;
  rows: number | null;
  chunks: number | null;
  tables: number | null;
  shardBytes: number | null;
  /** Milliseconds since the last heartbeat (Redis server time). */
  heartbeatAgeMs: number;
  host: string | null;
  pid: number | null;
  /** Null when the stream or its group does not exist (yet). */
  stream: OpsStreamInfo | null;
  counters: WorkerCounters | null;
  /** Its secondary indexes, over every table: built (`ready`) and `failed` (GET /tables/:name/indexes says why). */
  indexes: { ready: number; failed: number };
}

/** One coordinator in {@link ClusterStatus}. */
export interface CoordinatorStatusView {
  id: string;
  live: boolean;
  heartbeatAgeMs: number;
  /** Entries on its reply stream. */
  replyStreamLength: number;
}

/** A dead-lettered ops entry, without its payload (which may hold row data). */
export interface DeadLetterView {
  id: string;
  worker: string;
  stream: string;
  entry: string;
  reason: string;
}

/** Everything `GET /status` answers and `/metrics` exports: one consistent look at Redis. */
export interface ClusterStatus {
  /** The coordinator that answered. */
  coordinator: string;
  prefix: string;
  /** Redis server time of the look (ms). */
  at: number;
  workers: WorkerStatusView[];
  coordinators: CoordinatorStatusView[];
  tables: number;
  chunks: number;
  underReplicated: number;
  openPosts: number;
  deadLetters: { count: number; recent: DeadLetterView[] };
  /**
   * Redis memory (INFO memory; on a cluster, the fullest master): used and `maxmemory`
   * bytes (0: no limit), and `warning` once used passes 80 % of it. At the limit Redis
   * refuses writes, and POSTs, UPDATEs, DELETEs and reads fail with a 503 naming it.
   */
  redisMemory: RedisMemory;
  /** BullMQ job counts per queue and state (`waiting`, `active`, `delayed`, `failed`, …). */
  queues: Record<string, Record<string, number>>;
  /** Parts that did not answer within the time limit (their numbers are 0 or empty). */
  incomplete: string[];
}

/** Redis memory as `/status` reports it. */
export interface RedisMemory {
  usedBytes: number;
  /** 0 when Redis has no `maxmemory` (it grows until the machine runs out). */
  maxBytes: number;
  /** The share of `maxmemory` used, 0..1 (0 without a limit). */
  usedRatio: number;
  /** Set from {@link MEMORY_WARNING_RATIO}: say so before writes start failing. */
  warning?: string;
}

/** The share of `maxmemory` from which `/status` warns. */
export const MEMORY_WARNING_RATIO = 0.8;

/** Reads INFO memory of a connection (every master of a cluster) and keeps the fullest. */
export async function readRedisMemory(cmd: DstoreRedis): Promise<RedisMemory> {
  const nodes = isCluster(cmd) ? (cmd as unknown as Cluster).nodes('master') : [cmd];
  let best: RedisMemory = { usedBytes: 0, maxBytes: 0, usedRatio: 0 };
  for (const n of nodes) {
    const info = await n.info('memory');
    const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    const used = num('used_memory');
    const max = num('maxmemory');
    const m = { usedBytes: used, maxBytes: max, usedRatio: max > 0 ? used / max : 0 };
    if (m.usedRatio > best.usedRatio || (best.usedRatio === 0 && m.usedBytes > best.usedBytes)) best = m;
  }
  if (best.usedRatio >= MEMORY_WARNING_RATIO) {
    best.warning = `Redis uses ${Math.round(best.usedRatio * 100)} % of its maxmemory (${best.usedBytes} of ${best.maxBytes} bytes); at 100 % every write and read fails. The _id index of each table holds most of it (docs/scaling.md): raise maxmemory, or add Redis Cluster masters`;
  }
  return best;
}

/** What {@link readClusterStatus} needs from a coordinator. */
export interface StatusSources {
  cmd: DstoreRedis;
  keys: Keys;
  workers: WorkerDirectory;
  coordinatorId: string;
  coordinatorTimeoutMs: number;
  /** BullMQ job counts of each queue. */
  queueCounts(): Promise<Record<string, Record<string, number>>>;
}

/** How many dead letters `recent` lists. */
const RECENT_DEAD = 5;

/**
 * Reads the cluster's state from Redis: heartbeats, stream backlogs, dead letters,
 * under-replicated chunks and queue counts. Each part has `timeoutMs`; a part that does
 * not answer in time is named in `incomplete` rather than failing the whole answer, so
 * a scrape during a Redis hiccup still says what it could.
 */
export async function readClusterStatus(src: StatusSources, timeoutMs: number): Promise<ClusterStatus> {
  const incomplete: string[] = [];
  const part = async <T>(name: string, fallback: T, p: () => Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<T>((resolve) => {
      timer = setTimeout(() => {
        incomplete.push(name);
        resolve(fallback);
      }, timeoutMs);
    });
    const work = p().catch(() => {
      incomplete.push(name);
      return fallback;
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  };
  const { cmd, keys } = src;
  const [workers, coords, counts, dead, queues, redisMemory] = await Promise.all([
    part('workers', [], () => readWorkers(src)),
    part('coordinators', { at: 0, list: [] as CoordinatorStatusView[] }, () => readCoordinators(src)),
    part('counts', { tables: 0, chunks: 0, underReplicated: 0, openPosts: 0 }, async () => {
      const [[, tables], [, chunks], [, under], [, open]] = (await cmd
        .multi()
        .hlen(keys.tables)
        .hlen(keys.chunks)
        .zcard(keys.underReplicated)
        .hlen(keys.openPosts)
        .exec()) as [unknown, number][];
      return { tables, chunks, underReplicated: under, openPosts: open };
    }),
    part('deadLetters', { count: 0, recent: [] as DeadLetterView[] }, () => readDeadLetters(cmd, keys.dead)),
    part('queues', {}, () => src.queueCounts()),
    part('redisMemory', { usedBytes: 0, maxBytes: 0, usedRatio: 0 } as RedisMemory, () => readRedisMemory(cmd)),
  ]);
  return {
    coordinator: src.coordinatorId,
    prefix: keys.prefix,
    at: coords.at,
    workers,
    coordinators: coords.list,
    ...counts,
    deadLetters: dead,
    queues,
    redisMemory,
    incomplete: incomplete.sort(),
  };
}

async function readWorkers(src: StatusSources): Promise<WorkerStatusView[]> {
  const list = await src.workers.list();
  // One command per stream, not a pipeline: on a Redis Cluster each stream has its own slot.
  const settle = <T>(p: Promise<T>): Promise<[Error | null, T]> =>
    p.then(
      (v) => [null, v] as [null, T],
      (e: Error) => [e, undefined as T],
    );
  const replies = await Promise.all(
    list.flatMap((w) => {
      const key = src.keys.workerOps(w.id);
      return [settle<unknown>(src.cmd.xlen(key)), settle<unknown>(xinfoGroups(src.cmd, key))];
    }),
  );
  return list.map((w, i) => {
    const key = src.keys.workerOps(w.id);
    const [lenErr, length] = replies[2 * i] as [Error | null, number];
    const [groupsErr, groups] = replies[2 * i + 1] as [Error | null, unknown[][]];
    let stream: OpsStreamInfo | null = null;
    const group = groupsErr || lenErr ? undefined : groups.map(pairs).find((g) => g.name === OPS_GROUP);
    if (group) {
      stream = {
        key,
        length,
        pending: Number(group.pending ?? 0),
        lag: group.lag === null || group.lag === undefined ? null : Number(group.lag),
        lastDeliveredId: String(group['last-delivered-id'] ?? '0-0'),
      };
    }
    const s = w.status;
    return {
      id: w.id,
      live: w.live,
      ready: s?.ready ?? false,
      state: s?.state ?? 'unknown',
      storage: s?.storage ?? 'ok',
      storageError: s?.storageError ?? null,
      shard: s?.shard ?? null,
      rows: s?.rows ?? null,
      chunks: s?.chunks ?? null,
      tables: s?.tables ?? null,
      shardBytes: s?.shardBytes ?? null,
      heartbeatAgeMs: w.age,
      host: s?.host ?? null,
      pid: s?.pid ?? null,
      stream,
      counters: s?.counters ?? null,
      indexes: countIndexes(s?.indexes),
    };
  });
}

async function readCoordinators(src: StatusSources): Promise<{ at: number; list: CoordinatorStatusView[] }> {
  const [[, entries], [, time]] = (await src.cmd
    .multi()
    .zrange(src.keys.coordinators, 0, -1, 'WITHSCORES')
    .time()
    .exec()) as [[null, string[]], [null, [string, string]]];
  const at = timeToMs(time);
  const ids: string[] = [];
  const seen: number[] = [];
  for (let i = 0; i < entries.length; i += 2) {
    ids.push(entries[i]);
    seen.push(Number(entries[i + 1]));
  }
  const lens = await Promise.all(ids.map((id) => src.cmd.xlen(src.keys.coordReplies(id)).catch(() => 0)));
  const list = ids.map((id, i) => {
    const age = at - seen[i];
    return { id, live: age <= src.coordinatorTimeoutMs, heartbeatAgeMs: age, replyStreamLength: lens[i] };
  });
  return { at, list };
}

async function readDeadLetters(cmd: DstoreRedis, key: string): Promise<{ count: number; recent: DeadLetterView[] }> {
  const [[, count], [, recent]] = (await cmd
    .multi()
    .xlen(key)
    .xrevrange(key, '+', '-', 'COUNT', RECENT_DEAD)
    .exec()) as [[null, number], [null, [string, string[]][]]];
  return {
    count,
    recent: recent.map(([id, fields]) => {
      const f = pairs(fields);
      return {
        id,
        worker: String(f.worker ?? ''),
        stream: String(f.stream ?? ''),
        entry: String(f.id ?? ''),
        reason: String(f.reason ?? ''),
      };
    }),
  };
}

/**
 * `XINFO GROUPS key`. ioredis' Cluster client does not know where the key of an XINFO
 * subcommand is, so it may send it to the wrong master; the MOVED answer names the right
 * one, which is asked directly.
 */
async function xinfoGroups(cmd: DstoreRedis, key: string): Promise<unknown> {
  try {
    return await cmd.xinfo('GROUPS', key);
  } catch (e) {
    const moved = /^MOVED \d+ (.+):(\d+)$/.exec((e as Error).message);
    if (!moved || !isCluster(cmd)) throw e;
    const node = (cmd as unknown as Cluster)
      .nodes('master')
      .find((n) => n.options.host === moved[1] && String(n.options.port) === moved[2]);
    if (!node) throw e;
    return node.xinfo('GROUPS', key);
  }
}

/** `[k1, v1, k2, v2, …]` (a Redis field list) → an object. */
function pairs(flat: unknown[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[String(flat[i])] = flat[i + 1];
  return o;
}

function countIndexes(byTable: WorkerStatus['indexes']): { ready: number; failed: number } {
  const out = { ready: 0, failed: 0 };
  for (const ix of Object.values(byTable ?? {}))
    for (const st of Object.values(ix)) if (st.state === 'ready' || st.state === 'failed') out[st.state]++;
  return out;
}
