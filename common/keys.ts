import { assertName } from './names';

/**
 * The only place a Redis key or channel is spelled. Keys use `:` so that Redis tooling
 * (redis-cli --scan, RedisInsight) groups them, and carry a Redis Cluster hash tag (the
 * part in braces, which alone decides the slot):
 *
 * - shared metadata is tagged with the prefix, `{dstore}:chunks`, so every multi-key
 *   script and MULTI over it touches one slot;
 * - each worker's ops stream is tagged with the worker id, `dstore:worker:{w1}:ops`, and
 *   each coordinator's reply stream with its id, `dstore:coord:{c1}:replies`, so the
 *   heavy per-process streams spread over the cluster's nodes;
 * - each worker's fetch channel is tagged like its ops stream, `dstore:worker:{w1}:fetch`, a
 *   sharded pub/sub channel on a cluster.
 *
 * On a single Redis the tags are just part of the name. docs/scaling.md says why.
 */
export interface Keys {
  readonly prefix: string;
  /** STREAM: ops (SETUP_TABLE, POST, UPDATE, DELETE, DROP_TABLE) for one worker, read by its consumer group. */
  workerOps(workerId: string): string;
  /** STREAM: a coordinator's reply stream (POST_ACK, OP_ACK, FETCH_RESP). */
  coordReplies(coordinatorId: string): string;
  /** Whether a key is a coordinator reply stream of this prefix: the only `replyTo` a worker accepts. */
  isCoordReplies(key: string): boolean;
  /**
   * A Redis connection name (`CLIENT SETNAME`, shown by `CLIENT LIST`): `<prefix>:<kind>:<id>:<role>`,
   * e.g. `dstore:worker:w1:ops`, so operators and tests see who is who.
   */
  connectionName(kind: 'worker' | 'coord', id: string, role: string): string;
  /** STREAM: messages that failed to decode, with the reason. */
  readonly dead: string;
  /**
   * PUB/SUB channel (sharded on a cluster): FETCH requests and read credit for one worker.
   * Tagged with the worker id, like its ops stream, so channels spread over the nodes.
   */
  workerFetch(workerId: string): string;
  /** ZSET: worker id → last heartbeat (Redis server time, ms). */
  readonly workers: string;
  /** HASH: worker id → JSON status (state, ready, rows, chunks, appliedId, shard, storage, …). */
  readonly workerStatus: string;
  /**
   * HASH: worker id → JSON {shard, at}: the shard (SQLite file) the worker id serves. A worker
   * reporting another shard is a new incarnation whose recorded chunks are lost.
   */
  readonly workerShards: string;
  /** STRING: the global placement token (INCR). */
  readonly token: string;
  /** HASH: table name → JSON definition (schema, version, createdAt). */
  readonly tables: string;
  /** HASH: chunk id → JSON { table, replicas, rows, post }. */
  readonly chunks: string;
  /** SET: chunk ids of one table. */
  tableChunks(table: string): string;
  /**
   * STRING counter: bumped whenever the readable chunks of a table or their replicas change
   * (a commit begins or ends, a repair, a move, a lost shard). Coordinators cache a table's
   * placement and reload it when this changes (coordinator/placement.ts).
   */
  placementVersion(table: string): string;
  /** HASH: POSTs sent but not yet committed or aborted → JSON {coordinator, table, at}. */
  readonly openPosts: string;
  /** SET: chunk ids of an open POST. */
  postChunks(post: string): string;
  /** SET: workers that got a chunk of an open POST. */
  postWorkers(post: string): string;
  /**
   * LIST: the rows of an open upsert POST whose `_id` was already stored, as JSON batches
   * `{mode, chunks, ids, rows}`; sent as UPSERT ops with its COMMIT (by clean-up too).
   */
  postUpserts(post: string): string;
  /** SET: chunk ids held by one worker. */
  workerChunks(workerId: string): string;
  /** ZSET: chunk ids below the replication factor, or not yet checked (score: when repair should look, ms). */
  readonly underReplicated: string;
  /**
   * STRING: the workers that could take copies at the last repair sweep (sorted ids). When
   * it changes, every chunk waiting for a target is looked at again at once.
   */
  readonly repairWorkers: string;
  /** HASH: worker id → JSON {at, force} for workers being drained (no new chunks land on them). */
  readonly draining: string;
  /** HASH: worker id → JSON {at, drainedFrom} for drained workers, which are no longer listed. */
  readonly retired: string;
  /** SET: chunk ids with a planned move (rebalance) not yet done. */
  readonly movesPending: string;
  /**
   * ZSET: `<coordinator id>:<token>` → Redis time (ms) an UPDATE/DELETE was registered, until
   * it is on every worker's stream. A chunk copy waits for the ones registered before it
   * (docs/architecture.md, "Copies are verified").
   */
  readonly mutationsInflight: string;
  /**
   * HASH: the table's `_id` index, `_id` → chunk id holding it (coordinator/id-index.ts).
   * Tagged by the table, not with the shared metadata: it is the one key that grows with
   * rows, so on a cluster each table's index may sit on its own master.
   */
  idIndex(table: string): string;
  /**
   * HASH: `_id` → the open upsert POST that will rewrite its stored row. A POST must not
   * take such an id (as deleted, say) until that POST is done (coordinator/id-index.ts).
   */
  upserting(table: string): string;
  /**
   * STREAM: the committed changes of a table with changes on (common/changes.ts), one entry
   * per row changed, in the table's write order: fields `op`, `id`, `row`. Tagged by the
   * table, like its id index.
   */
  changes(table: string): string;
  /**
   * LIST: the change events of one write (a POST, an UPDATE or DELETE) staged until its
   * commit moves them into {@link changes} (common/lua/move-changes-2.lua); deleted when the
   * POST aborts.
   */
  changesStaged(table: string, write: string): string;
  /**
   * STRING: the write-order lock of a table (a token, with a lease): UPDATE, DELETE and
   * COMMIT are XADDed to every stream while holding it (coordinator/order-lock.ts).
   */
  orderLock(table: string): string;
  /**
   * STRING: the POST whose commit ops (UPSERTs, COMMIT) are being sent under the table's
   * write-order lock; left by a sender that died half way, for the next holder to finish
   * (coordinator/commit-send.ts).
   */
  orderPending(table: string): string;
  /**
   * STRING: the worker building secondary indexes now (a lease). Builds run one worker at a
   * time, so the other copies of a chunk keep taking writes meanwhile (worker/ops-consumer.ts).
   */
  readonly indexBuildLease: string;
  /**
   * HASH: one backup in progress (coordinator/backup.ts): `cut` (JSON: when, and each table's
   * definition and chunks with their holders), `rows:<table>` rows read so far, `done:<table>`
   * rows of a table read whole. Expires when not used.
   */
  backup(id: string): string;
  /** STRING: JSON report of the last scrub pass. */
  readonly scrubReport: string;
  /**
   * STREAM: every scrub pass's report (field `report`, JSON), capped at
   * {@link SCRUB_REPORTS_KEPT}: the last report alone loses a rebuild to the next clean pass.
   */
  readonly scrubReports: string;
  /**
   * STRING: the random key every coordinator signs and checks query cursors with
   * (coordinator/cursor.ts), created by the first coordinator that needs it.
   */
  readonly cursorSecret: string;
  /** ZSET: coordinator id → last heartbeat (ms). */
  readonly coordinators: string;
  /** Prefix for BullMQ queues (BullMQ appends `:<queue>:<key>`); hash-tagged as BullMQ requires on a cluster. */
  readonly bullPrefix: string;
  /** SCAN patterns that together match every key of this prefix (for tooling and tests). */
  readonly patterns: readonly string[];
}

/** Members of {@link Keys} that are not a key (or channel) builder: helpers and the prefix itself. */
export const NOT_KEYS: readonly (keyof Keys)[] = ['prefix', 'patterns', 'isCoordReplies', 'connectionName'];

/** Scrub reports kept in {@link Keys.scrubReports} (about; trimmed with `MAXLEN ~`). */
export const SCRUB_REPORTS_KEPT = 1000;

/** The consumer group every worker uses on its own ops stream. */
export const OPS_GROUP = 'apply';

/** A valid key prefix: no braces, since keys.ts places the hash tags itself. */
export const PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Builds the key set for one prefix (default `dstore`). */
export function makeKeys(prefix: string): Keys {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`invalid key prefix ${JSON.stringify(prefix)}: use 1-64 letters, digits, "_" or "-"`);
  }
  const shared = `{${prefix}}`;
  return {
    prefix,
    workerOps: (id) => `${prefix}:worker:{${assertName('worker id', id)}}:ops`,
    coordReplies: (id) => `${prefix}:coord:{${assertName('coordinator id', id)}}:replies`,
    isCoordReplies: (key) => /^[^:]+:coord:\{[^{}]+\}:replies$/.test(key) && key.startsWith(`${prefix}:coord:{`),
    connectionName: (kind, id, role) => `${prefix}:${kind}:${id}:${role}`,
    dead: `${shared}:dead`,
    workerFetch: (id) => `${prefix}:worker:{${assertName('worker id', id)}}:fetch`,
    workers: `${shared}:workers`,
    workerStatus: `${shared}:workers:status`,
    workerShards: `${shared}:workers:shards`,
    token: `${shared}:token`,
    tables: `${shared}:tables`,
    chunks: `${shared}:chunks`,
    tableChunks: (table) => `${shared}:table:${assertName('table', table)}:chunks`,
    placementVersion: (table) => `${shared}:table:${assertName('table', table)}:placement`,
    openPosts: `${shared}:posts:open`,
    postChunks: (post) => `${shared}:post:${assertName('op id', post)}:chunks`,
    postWorkers: (post) => `${shared}:post:${assertName('op id', post)}:workers`,
    postUpserts: (post) => `${shared}:post:${assertName('op id', post)}:upserts`,
    workerChunks: (id) => `${shared}:worker:${assertName('worker id', id)}:chunks`,
    underReplicated: `${shared}:chunks:under-replicated`,
    repairWorkers: `${shared}:repair:workers`,
    coordinators: `${shared}:coordinators`,
    scrubReport: `${shared}:scrub:last`,
    scrubReports: `${shared}:scrub:reports`,
    indexBuildLease: `${shared}:index-build`,
    backup: (id) => `${shared}:backup:${assertName('backup id', id)}`,
    cursorSecret: `${shared}:cursor-secret`,
    draining: `${shared}:workers:draining`,
    retired: `${shared}:workers:retired`,
    movesPending: `${shared}:moves:pending`,
    mutationsInflight: `${shared}:mutations:inflight`,
    idIndex: (table) => `${prefix}:table:{${assertName('table', table)}}:ids`,
    upserting: (table) => `${prefix}:table:{${assertName('table', table)}}:upserting`,
    changes: (table) => `${prefix}:table:{${assertName('table', table)}}:changes`,
    changesStaged: (table, write) =>
      `${prefix}:table:{${assertName('table', table)}}:staged:${assertName('op id', write)}`,
    orderLock: (table) => `${shared}:order:${assertName('table', table)}`,
    orderPending: (table) => `${shared}:order:${assertName('table', table)}:pending`,
    bullPrefix: `${shared}:bull`,
    patterns: [`${shared}:*`, `${prefix}:*`],
  };
}
