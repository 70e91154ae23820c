import { assertName } from './names';

/**
 * The only place a Redis key or channel is spelled. Every key starts with the
 * prefix and uses `:` so that Redis tooling (redis-cli --scan, RedisInsight) groups
 * them: `dstore:worker:w1:ops`, `dstore:coord:c1:replies`, `dstore:fetch`, …
 */
export interface Keys {
  readonly prefix: string;
  /** STREAM: ops (SETUP_TABLE, POST, UPDATE, DELETE, DROP_TABLE) for one worker, read by its consumer group. */
  workerOps(workerId: string): string;
  /** STREAM: a coordinator's reply stream (POST_ACK, OP_ACK, FETCH_RESP). */
  coordReplies(coordinatorId: string): string;
  /** STREAM: messages that failed to decode, with the reason. */
  readonly dead: string;
  /** PUB/SUB channel: FETCH requests to every worker. */
  readonly fetchChannel: string;
  /** ZSET: worker id → last heartbeat (Redis server time, ms). */
  readonly workers: string;
  /** HASH: worker id → JSON status (state, ready, rows, chunks, appliedId, …). */
  readonly workerStatus: string;
  /** STRING: the global placement token (INCR). */
  readonly token: string;
  /** HASH: table name → JSON definition (schema, version, createdAt). */
  readonly tables: string;
  /** HASH: chunk id → JSON { table, replicas, rows, post }. */
  readonly chunks: string;
  /** SET: chunk ids of one table. */
  tableChunks(table: string): string;
  /** HASH: POSTs sent but not yet committed or aborted → JSON {coordinator, table, at}. */
  readonly openPosts: string;
  /** SET: chunk ids of an open POST. */
  postChunks(post: string): string;
  /** SET: workers that got a chunk of an open POST. */
  postWorkers(post: string): string;
  /** SET: chunk ids held by one worker. */
  workerChunks(workerId: string): string;
  /** ZSET: chunk ids below the replication factor (score: time recorded). */
  readonly underReplicated: string;
  /** STRING: JSON report of the last scrub pass. */
  readonly scrubReport: string;
  /** ZSET: coordinator id → last heartbeat (ms). */
  readonly coordinators: string;
  /** Prefix for BullMQ queues (BullMQ appends `:<queue>:<key>`). */
  readonly bullPrefix: string;
}

/** The consumer group every worker uses on its own ops stream. */
export const OPS_GROUP = 'apply';

/** Builds the key set for one prefix (default `dstore`). */
export function makeKeys(prefix: string): Keys {
  if (!/^[A-Za-z0-9_{}-]{1,64}$/.test(prefix)) {
    throw new Error(`invalid key prefix ${JSON.stringify(prefix)}: use 1-64 letters, digits, "_", "-" (and "{}" for a cluster hash tag)`);
  }
  return {
    prefix,
    workerOps: (id) => `${prefix}:worker:${assertName('worker id', id)}:ops`,
    coordReplies: (id) => `${prefix}:coord:${assertName('coordinator id', id)}:replies`,
    dead: `${prefix}:dead`,
    fetchChannel: `${prefix}:fetch`,
    workers: `${prefix}:workers`,
    workerStatus: `${prefix}:workers:status`,
    token: `${prefix}:token`,
    tables: `${prefix}:tables`,
    chunks: `${prefix}:chunks`,
    tableChunks: (table) => `${prefix}:table:${assertName('table', table)}:chunks`,
    openPosts: `${prefix}:posts:open`,
    postChunks: (post) => `${prefix}:post:${assertName('op id', post)}:chunks`,
    postWorkers: (post) => `${prefix}:post:${assertName('op id', post)}:workers`,
    workerChunks: (id) => `${prefix}:worker:${assertName('worker id', id)}:chunks`,
    underReplicated: `${prefix}:chunks:under-replicated`,
    coordinators: `${prefix}:coordinators`,
    scrubReport: `${prefix}:scrub:last`,
    bullPrefix: `${prefix}:bull`,
  };
}
