import { PREFIX_PATTERN } from './keys';
import { isValidName } from './names';
import {
  computed,
  parseSetting,
  readSetting,
  unset,
  type Env,
  type Setting,
  type SettingUse,
  type SettingValue,
} from './setting-kinds';
import { DAY, GiB, HOUR, KiB, MiB, MINUTE, SECOND } from './units';

/**
 * Every setting of dstore, once: variable, the option it fills, who reads it, kind and
 * bounds, default and one line of doc. Parsing (common/config.ts), the README's settings
 * table and `dstore worker|coordinator --help` (common/settings-doc.ts) all come from it.
 * Order is the README's: shared settings, then worker, coordinator and CLI.
 */

const ID_RULE = '1-64 letters, digits, "_", "." or "-"';

export const SETTINGS = [
  // Every process.
  {
    env: 'REDIS_URL',
    key: 'redisUrl',
    use: 'all',
    kind: 'url',
    default: 'redis://127.0.0.1:6379',
    protocols: ['redis', 'rediss'],
    example: 'redis://host:port or rediss://user:pass@host:port/db',
    secret: true,
    doc: 'Redis to use, user and password in the URL (`rediss://` for TLS).',
  },
  {
    env: 'REDIS_CLUSTER_NODES',
    key: 'redisClusterNodes',
    use: 'all',
    kind: 'list',
    item: 'host:port',
    default: unset('(unset: single Redis)'),
    doc: 'Redis Cluster seed nodes, `host:port,host:port` (IPv6 as `[::1]:7000`); switches every connection to Redis Cluster. User, password and TLS still come from `REDIS_URL`.',
  },
  {
    env: 'REDIS_TLS_CA_FILE',
    key: 'redisTlsCa',
    use: 'all',
    kind: 'file',
    default: unset('none (system CAs)'),
    doc: 'PEM file of the CA that signed the Redis server certificate, for `rediss://` URLs; read at start, a missing or unreadable file stops the process.',
  },
  {
    env: 'DSTORE_PREFIX',
    key: 'prefix',
    use: 'all',
    kind: 'text',
    default: 'dstore',
    valid: (v: string) => PREFIX_PATTERN.test(v),
    rule: '1-64 letters, digits, "_" or "-"',
    hint: 'dstore adds the cluster hash tags itself',
    doc: 'Prefix of every Redis key, channel and BullMQ queue.',
  },
  {
    env: 'LOG_LEVEL',
    key: 'logLevel',
    use: 'all',
    kind: 'choice',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    doc: 'Least severe level that is logged; `silent` logs nothing.',
  },
  {
    env: 'LOG_FORMAT',
    key: 'logFormat',
    use: 'all',
    kind: 'choice',
    choices: ['json', 'pretty'],
    default: computed('`pretty` on a TTY, else `json`', () => (process.stdout.isTTY ? 'pretty' : 'json')),
    doc: '`json` (one object a line) or `pretty` (coloured, for people).',
  },

  // Worker.
  {
    env: 'DSTORE_WORKER_ID',
    key: 'workerId',
    use: 'worker',
    kind: 'text',
    default: unset('generated once, kept in the data dir'),
    valid: isValidName,
    rule: ID_RULE,
    doc: 'Stable id of a worker (`--id` overrides).',
  },
  {
    env: 'DSTORE_DATA_DIR',
    key: 'dataDir',
    use: 'worker',
    kind: 'path',
    default: './dstore-data',
    doc: "Directory of the worker's SQLite shard and id file (`--data-dir` overrides).",
  },
  {
    env: 'DSTORE_HEARTBEAT_MS',
    key: 'heartbeatMs',
    use: 'worker',
    kind: 'int',
    default: 1 * SECOND,
    min: 50,
    max: 1 * MINUTE,
    unit: 'ms',
    doc: 'How often a worker reports itself alive.',
  },
  {
    env: 'DSTORE_OPS_BATCH',
    key: 'opsBatch',
    use: 'worker',
    kind: 'int',
    default: 32,
    min: 1,
    max: 10_000,
    doc: 'Stream entries read from the ops stream per call.',
  },
  {
    env: 'DSTORE_APPLY_ATTEMPTS',
    key: 'applyAttempts',
    use: 'worker',
    kind: 'int',
    default: 5,
    min: 1,
    max: 100,
    doc: 'Tries of an entry failing for a transient reason before it is dead-lettered.',
  },
  {
    env: 'DSTORE_FETCH_BATCH_ROWS',
    key: 'fetchBatchRows',
    use: 'worker',
    kind: 'int',
    default: 1000,
    min: 1,
    max: 1_000_000,
    doc: 'Rows per FETCH_RESP message.',
  },
  {
    env: 'DSTORE_FETCH_BATCH_BYTES',
    key: 'fetchBatchBytes',
    use: 'worker',
    kind: 'int',
    default: 256 * KiB,
    min: 1 * KiB,
    max: 64 * MiB,
    unit: 'bytes',
    doc: 'Bytes of rows per FETCH_RESP message (whichever limit comes first).',
  },
  // Full by default because an ack promises the chunk is on disk.
  {
    env: 'DSTORE_SQLITE_SYNC',
    key: 'sqliteSync',
    use: 'worker',
    kind: 'choice',
    choices: ['full', 'normal'],
    default: 'full',
    doc: 'SQLite `synchronous`: `full` (an acked chunk survives power loss) or `normal` (faster; survives a process crash only).',
  },
  {
    env: 'DSTORE_SQLITE_MMAP_BYTES',
    key: 'sqliteMmapBytes',
    use: 'worker',
    kind: 'int',
    default: 1024 * MiB,
    min: 0,
    max: 64 * 1024 * MiB,
    unit: 'bytes',
    doc: "SQLite `mmap_size` of the worker's read connections: reads of the shard's first bytes come from the OS page cache without a copy, shared by every connection (each has only a 2 MiB page cache of its own). `0` turns it off.",
  },
  {
    env: 'DSTORE_FAILPOINT_DISK_FULL_FILE',
    key: 'failpointDiskFullFile',
    use: 'worker',
    kind: 'path',
    default: unset('none'),
    doc: "Testing only: while a file exists at this path the worker's shard cannot grow (SQLite max_page_count), so writes fail as on a full disk; removing it frees the space again. Never set in production.",
  },

  {
    env: 'DSTORE_FAILPOINT_INDEX_BUILD_MS',
    key: 'failpointIndexBuildMs',
    use: 'worker',
    kind: 'int',
    default: 0,
    min: 0,
    max: 1 * MINUTE,
    unit: 'ms',
    doc: "Testing only: each secondary-index build holds the shard's write lock this long before it runs, as a build over a large table would. Never set in production.",
  },

  // Coordinator.
  {
    env: 'DSTORE_COORDINATOR_ID',
    key: 'coordinatorId',
    use: 'coordinator',
    kind: 'text',
    default: unset('generated at each start'),
    valid: isValidName,
    rule: ID_RULE,
    doc: 'Id of a coordinator (names its reply stream).',
  },
  {
    env: 'DSTORE_HOST',
    key: 'host',
    use: 'coordinator',
    kind: 'text',
    default: '127.0.0.1',
    rule: 'host name or IP address',
    doc: 'Address the HTTP API listens on (`--host` overrides); one reachable from other machines needs `DSTORE_TOKENS` or `DSTORE_INSECURE=1`.',
  },
  {
    env: 'DSTORE_PORT',
    key: 'port',
    use: 'coordinator',
    kind: 'int',
    default: 7070,
    min: 0,
    max: 65535,
    doc: 'Port of the HTTP API (`0` picks a free one; `--port` overrides).',
  },
  {
    env: 'DSTORE_REPLICAS',
    key: 'replicas',
    use: 'coordinator',
    kind: 'int',
    default: 2,
    min: 1,
    max: 16,
    doc: 'Replication factor R: copies of each chunk (`--replicas` overrides).',
  },
  {
    env: 'DSTORE_MIN_REPLICAS',
    key: 'minReplicas',
    use: 'coordinator',
    kind: 'int',
    default: 1,
    min: 1,
    max: 16,
    doc: 'Acks each chunk needs before a POST succeeds; at most `DSTORE_REPLICAS`.',
  },
  {
    env: 'DSTORE_CHUNK_ROWS',
    key: 'chunkRows',
    use: 'coordinator',
    kind: 'int',
    default: 1000,
    min: 1,
    max: 1_000_000,
    doc: 'Rows per chunk (a chunk is cut at this or `DSTORE_CHUNK_BYTES`).',
  },
  {
    env: 'DSTORE_CHUNK_BYTES',
    key: 'chunkBytes',
    use: 'coordinator',
    kind: 'int',
    default: 1 * MiB,
    min: 1 * KiB,
    max: 64 * MiB,
    unit: 'bytes',
    doc: 'Bytes per chunk; also the most `DSTORE_MAX_RECORD_BYTES` may be.',
  },
  {
    env: 'DSTORE_INGEST_WINDOW',
    key: 'ingestWindow',
    use: 'coordinator',
    kind: 'int',
    default: 16,
    min: 1,
    max: 10_000,
    doc: 'Chunks of one POST in flight (sent, not yet acked); bounds memory.',
  },
  {
    env: 'DSTORE_ACK_TIMEOUT_MS',
    key: 'ackTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 30 * SECOND,
    min: 100,
    max: 1 * HOUR,
    unit: 'ms',
    doc: 'How long a chunk waits for `DSTORE_MIN_REPLICAS` acks before the POST fails.',
  },
  {
    env: 'DSTORE_FETCH_WINDOW',
    key: 'fetchWindow',
    use: 'coordinator',
    kind: 'int',
    default: 8,
    min: 1,
    max: 10_000,
    doc: 'FETCH_RESP batches per worker a read may hold before the client takes them; the worker waits for credit beyond that (bounds coordinator memory for slow readers).',
  },
  {
    env: 'DSTORE_FETCH_TIMEOUT_MS',
    key: 'fetchTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 10 * SECOND,
    min: 100,
    max: 1 * HOUR,
    unit: 'ms',
    doc: 'How long a FETCH waits on a silent worker before retrying without it.',
  },
  // A few heartbeats, so one late beat is no failure.
  {
    env: 'DSTORE_WORKER_TIMEOUT_MS',
    key: 'workerTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 5 * SECOND,
    min: 100,
    max: 1 * HOUR,
    unit: 'ms',
    doc: 'Heartbeat age after which a worker is no longer live.',
  },
  {
    env: 'DSTORE_BODY_LIMIT_BYTES',
    key: 'bodyLimitBytes',
    use: 'coordinator',
    kind: 'int',
    default: 1 * GiB,
    min: 1 * KiB,
    max: 64 * GiB,
    unit: 'bytes',
    doc: 'Largest request body (records are streamed, not buffered).',
  },
  {
    env: 'DSTORE_REPAIR_AFTER_MS',
    key: 'repairAfterMs',
    use: 'coordinator',
    kind: 'int',
    default: 1 * MINUTE,
    min: 100,
    max: 7 * DAY,
    unit: 'ms',
    doc: 'Heartbeat age after which a worker is lost for good and its chunks are copied to other workers.',
  },
  {
    env: 'DSTORE_SWEEP_MS',
    key: 'sweepMs',
    use: 'coordinator',
    kind: 'int',
    default: 5 * SECOND,
    min: 100,
    max: 1 * HOUR,
    unit: 'ms',
    doc: 'How often the repair sweep (a BullMQ job) looks for lost workers and under-replicated chunks, and the clean-up job for POSTs left open by dead coordinators.',
  },
  {
    env: 'DSTORE_COORDINATOR_TIMEOUT_MS',
    key: 'coordinatorTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 10 * SECOND,
    min: 500,
    max: 1 * HOUR,
    unit: 'ms',
    doc: 'Heartbeat age after which a coordinator is dead; the clean-up sweep aborts the POSTs it left open.',
  },
  {
    env: 'DSTORE_SCRUB_MS',
    key: 'scrubMs',
    use: 'coordinator',
    kind: 'int',
    default: 1 * HOUR,
    min: 0,
    max: 7 * DAY,
    unit: 'ms',
    doc: 'How often scrub (a BullMQ job) compares the replicas of every chunk and rebuilds bad copies; `0` turns it off.',
  },
  {
    env: 'DSTORE_JSON_BODY_LIMIT_BYTES',
    key: 'jsonBodyLimitBytes',
    use: 'coordinator',
    kind: 'int',
    default: 16 * MiB,
    min: 64,
    max: 1 * GiB,
    unit: 'bytes',
    doc: 'Largest JSON body of the routes that read it whole (query, update, delete, table); 413 above.',
  },
  {
    env: 'DSTORE_MAX_ROWS_PER_REQUEST',
    key: 'maxRowsPerRequest',
    use: 'coordinator',
    kind: 'int',
    default: 10_000_000,
    min: 1,
    max: 1_000_000_000,
    doc: 'Records one POST may carry; 413 above.',
  },
  {
    env: 'DSTORE_MAX_RECORD_BYTES',
    key: 'maxRecordBytes',
    use: 'coordinator',
    kind: 'int',
    default: 1 * MiB,
    min: 16,
    max: 64 * MiB,
    unit: 'bytes',
    doc: 'Largest single record as JSON text; at most `DSTORE_CHUNK_BYTES` (a record never spans chunks), which it follows when unset and smaller; 413 above.',
  },
  {
    env: 'DSTORE_MAX_FIELDS',
    key: 'maxFields',
    use: 'coordinator',
    kind: 'int',
    default: 1000,
    min: 1,
    max: 100_000,
    doc: "Top-level fields of one record (or of an update's `set`); 400 above.",
  },
  {
    env: 'DSTORE_MAX_DEPTH',
    key: 'maxDepth',
    use: 'coordinator',
    kind: 'int',
    default: 32,
    min: 1,
    max: 1000,
    doc: 'Nesting depth of objects and arrays inside one record value; 400 above.',
  },
  {
    env: 'DSTORE_QUERY_TIMEOUT_MS',
    key: 'queryTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 5 * MINUTE,
    min: 100,
    max: 1 * DAY,
    unit: 'ms',
    doc: 'Longest a query may run: 504 (or a final `_error` line once rows were sent).',
  },
  {
    env: 'DSTORE_MAX_RESULT_ROWS',
    key: 'maxResultRows',
    use: 'coordinator',
    kind: 'int',
    default: 10_000_000,
    min: 1,
    max: 1_000_000_000,
    doc: 'Rows one query may answer, and the one cap on `limit`: a larger `limit` is a 400 naming this setting (`field: "limit"`, `value`, `max`), and so is a longer answer found before the first 1000 rows are sent; later it ends with an `_error` line.',
  },
  {
    env: 'DSTORE_TOKENS',
    key: 'tokens',
    use: 'coordinator',
    kind: 'list',
    item: 'name:secret:role',
    default: unset('none (no authentication)'),
    secret: true,
    doc: 'API tokens `name:secret:role` (`read`, `write` or `admin`), comma-separated; see [docs/security.md](docs/security.md).',
  },
  {
    env: 'DSTORE_TOKENS_FILE',
    key: 'tokensFile',
    use: 'coordinator',
    kind: 'file',
    default: unset('none'),
    doc: 'File of API tokens, one `name:secret:role` a line (`#` comments); adds to `DSTORE_TOKENS`.',
  },
  {
    env: 'DSTORE_INSECURE',
    key: 'insecure',
    use: 'coordinator',
    kind: 'flag',
    default: false,
    doc: '`1` serves without tokens on a non-loopback `DSTORE_HOST` (anyone who reaches the port is admin); without it such a start fails.',
  },
  // Checked by parseEncryptionKey (common/field-crypto.ts), which knows what a key is.
  {
    env: 'DSTORE_ENCRYPTION_KEY',
    key: 'encryptionKey',
    use: 'coordinator',
    kind: 'text',
    default: unset('none (encrypted columns refused)'),
    secret: true,
    rule: '32 random bytes as base64 or 64 hex digits',
    doc: 'Key of encrypted columns (`ssn:string:encrypted`), made with `openssl rand -base64 32`; the same on every coordinator; never logged. See [docs/security.md](docs/security.md#field-encryption).',
  },
  // A scrape must not hang on a slow Redis.
  {
    env: 'DSTORE_STATUS_TIMEOUT_MS',
    key: 'statusTimeoutMs',
    use: 'coordinator',
    kind: 'int',
    default: 2 * SECOND,
    min: 50,
    max: 1 * MINUTE,
    unit: 'ms',
    doc: 'How long `GET /status` and `GET /metrics` wait for each part of their Redis read; a part that takes longer is reported as incomplete.',
  },
  {
    env: 'DSTORE_FAILPOINT_SEND_JITTER_MS',
    key: 'failpointSendJitterMs',
    use: 'coordinator',
    kind: 'int',
    default: 0,
    min: 0,
    max: 1 * SECOND,
    unit: 'ms',
    doc: 'Testing only: delays each XADD the coordinator makes to a worker stream by a random 0..N ms, as a slow link to one Redis node would (the write-order tests use it). Never set in production.',
  },
  {
    env: 'DSTORE_FAILPOINT_EXIT_AFTER_SEND',
    key: 'failpointExitAfterSend',
    use: 'coordinator',
    kind: 'int',
    default: 0,
    min: 0,
    max: 1_000_000,
    doc: 'Testing only: the coordinator exits (code 137, as if killed) right after the N-th UPDATE or DELETE of a table with changes on was put on the worker streams, before its change events are moved (0: never). Never set in production.',
  },

  // The CLI's client commands.
  {
    env: 'DSTORE_URL',
    key: 'url',
    use: 'cli',
    kind: 'url',
    default: 'http://127.0.0.1:7070',
    protocols: ['http', 'https'],
    example: 'http://host:port',
    doc: 'Coordinator the CLI talks to (`--url` overrides).',
  },
  {
    env: 'DSTORE_TOKEN',
    key: 'token',
    use: 'cli',
    kind: 'text',
    default: unset('none'),
    secret: true,
    valid: (v: string) => !/[\s,]/.test(v),
    rule: 'the secret alone (no spaces or commas), not name:secret:role',
    doc: 'Secret the CLI sends as `Authorization: Bearer`.',
  },
] as const satisfies readonly Setting[];

type Entry = (typeof SETTINGS)[number];

/**
 * The values of the settings `use` reads, by option key, as the table reads them (before the rules of
 * common/config.ts).
 */
export type SettingValues<U extends SettingUse> = {
  -readonly [E in Extract<Entry, { use: U }> as E['key']]: SettingValue<E>;
};

/** Reads every setting of `use` from `env`, in table order; the first wrong one throws its ConfigError. */
export function readSettings<U extends SettingUse>(env: Env, use: U): SettingValues<U> {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS as readonly Setting[]) if (s.use === use) out[s.key] = readSetting(env, s);
  return out as SettingValues<U>;
}

/** The name of a variable in the table. */
export type SettingName = Entry['env'];

/** The value variable `N` reads. */
export type SettingValueOf<N extends SettingName> = SettingValue<Extract<Entry, { env: N }>>;

/** The table entry of variable `name`. */
export function settingOf(name: SettingName): Setting {
  return (SETTINGS as readonly Setting[]).find((s) => s.env === name)!;
}

/** Reads the one variable `name` from `env`. */
export function readOne<N extends SettingName>(env: Env, name: N): SettingValueOf<N> {
  return readSetting(env, settingOf(name)) as SettingValueOf<N>;
}

/**
 * Reads `raw` with the rules and default of variable `name`, naming `flag` in errors: for a flag that stands for the
 * variable.
 */
export function readFlagAs<N extends SettingName>(name: N, raw: string | undefined, flag: string): SettingValueOf<N> {
  return parseSetting(settingOf(name), raw, flag) as SettingValueOf<N>;
}

/** The settings a process of kind `use` reads: its own and the shared ones. */
export function settingsOf(use: Exclude<SettingUse, 'all'>): Setting[] {
  return (SETTINGS as readonly Setting[]).filter((s) => s.use === 'all' || s.use === use);
}
