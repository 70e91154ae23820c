import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from './errors';
import { parseEncryptionKey } from './field-crypto';
import { PREFIX_PATTERN } from './keys';
import { isValidName } from './names';
import { parseTokenEntries, type ApiToken } from './tokens';

/**
 * Every setting of dstore, read from the environment in one place, with its default
 * and its check. A wrong value stops the process with one line naming the variable
 * (see {@link ConfigError}); entry points print `err.message` and exit 1.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const MiB = 1024 * 1024;

type Env = Record<string, string | undefined>;

/** One documented setting: the source of the README's settings table. */
export interface SettingDoc {
  env: string;
  default: string;
  used: 'all' | 'worker' | 'coordinator' | 'cli';
  description: string;
}

/** Every setting, in the order the README lists them. */
export const SETTINGS: readonly SettingDoc[] = [
  { env: 'REDIS_URL', default: 'redis://127.0.0.1:6379', used: 'all', description: 'Redis to use (redis:// or rediss://, user and password in the URL).' },
  { env: 'REDIS_CLUSTER_NODES', default: '(unset: single Redis)', used: 'all', description: 'Redis Cluster seed nodes, `host:port,host:port`; switches every connection to Redis Cluster. User, password and TLS still come from REDIS_URL.' },
  { env: 'DSTORE_PREFIX', default: 'dstore', used: 'all', description: 'Prefix of every Redis key, channel and BullMQ queue.' },
  { env: 'REDIS_TLS_CA_FILE', default: 'none (system CAs)', used: 'all', description: 'PEM file of the CA that signed the Redis server certificate, for rediss:// URLs; read at start.' },
  { env: 'LOG_LEVEL', default: 'info', used: 'all', description: 'fatal, error, warn, info, debug, trace or silent.' },
  { env: 'LOG_FORMAT', default: 'pretty on a TTY, else json', used: 'all', description: 'json (one JSON object a line) or pretty.' },
  { env: 'DSTORE_WORKER_ID', default: 'generated once, kept in the data dir', used: 'worker', description: 'Stable id of a worker (letters, digits, _ . -).' },
  { env: 'DSTORE_DATA_DIR', default: './dstore-data', used: 'worker', description: "Directory of the worker's SQLite shard and id file." },
  { env: 'DSTORE_HEARTBEAT_MS', default: '1000', used: 'worker', description: 'How often a worker reports itself alive.' },
  { env: 'DSTORE_OPS_BATCH', default: '32', used: 'worker', description: 'Stream entries read from the ops stream per call.' },
  { env: 'DSTORE_APPLY_ATTEMPTS', default: '5', used: 'worker', description: 'Tries of an entry that fails to apply for a transient reason before it is dead-lettered.' },
  { env: 'DSTORE_FETCH_BATCH_ROWS', default: '1000', used: 'worker', description: 'Rows per FETCH_RESP message.' },
  { env: 'DSTORE_FETCH_BATCH_BYTES', default: '262144', used: 'worker', description: 'Bytes of rows per FETCH_RESP message (whichever limit comes first).' },
  { env: 'DSTORE_SQLITE_SYNC', default: 'full', used: 'worker', description: 'SQLite synchronous mode: full (an acked chunk survives power loss) or normal (faster; survives a process crash only).' },
  { env: 'DSTORE_COORDINATOR_ID', default: 'generated at each start', used: 'coordinator', description: 'Id of a coordinator (names its reply stream).' },
  { env: 'DSTORE_HOST', default: '127.0.0.1', used: 'coordinator', description: 'Address the HTTP API listens on.' },
  { env: 'DSTORE_PORT', default: '7070', used: 'coordinator', description: 'Port of the HTTP API (0 picks a free one).' },
  { env: 'DSTORE_REPLICAS', default: '2', used: 'coordinator', description: 'Replication factor R: copies of each chunk.' },
  { env: 'DSTORE_MIN_REPLICAS', default: '1', used: 'coordinator', description: 'Acks a chunk needs before a POST succeeds.' },
  { env: 'DSTORE_CHUNK_ROWS', default: '1000', used: 'coordinator', description: 'Rows per chunk (a chunk is cut at this or DSTORE_CHUNK_BYTES).' },
  { env: 'DSTORE_CHUNK_BYTES', default: '1048576', used: 'coordinator', description: 'Bytes per chunk.' },
  { env: 'DSTORE_INGEST_WINDOW', default: '16', used: 'coordinator', description: 'Chunks of one POST in flight (sent, not yet acked); bounds memory.' },
  { env: 'DSTORE_ACK_TIMEOUT_MS', default: '30000', used: 'coordinator', description: 'How long a chunk waits for its acks before the POST fails or the chunk is marked under-replicated.' },
  { env: 'DSTORE_FETCH_WINDOW', default: '8', used: 'coordinator', description: 'FETCH_RESP batches per worker a read may hold before the client takes them; the worker waits for credit beyond that (bounds coordinator memory for slow readers).' },
  { env: 'DSTORE_FETCH_TIMEOUT_MS', default: '10000', used: 'coordinator', description: 'How long a FETCH waits for a worker before retrying without it.' },
  { env: 'DSTORE_WORKER_TIMEOUT_MS', default: '5000', used: 'coordinator', description: 'Heartbeat age after which a worker is not live.' },
  { env: 'DSTORE_BODY_LIMIT_BYTES', default: '1073741824', used: 'coordinator', description: 'Largest request body (records are streamed, not buffered).' },
  { env: 'DSTORE_REPAIR_AFTER_MS', default: '60000', used: 'coordinator', description: 'Heartbeat age after which a worker is lost for good and its chunks are copied elsewhere.' },
  { env: 'DSTORE_SWEEP_MS', default: '5000', used: 'coordinator', description: 'How often the repair sweep looks for lost workers and under-replicated chunks, and clean-up for POSTs left open by dead coordinators.' },
  { env: 'DSTORE_COORDINATOR_TIMEOUT_MS', default: '10000', used: 'coordinator', description: 'Heartbeat age after which a coordinator is dead and the POSTs it left open are aborted.' },
  { env: 'DSTORE_SCRUB_MS', default: '3600000', used: 'coordinator', description: 'How often scrub compares the replicas of every chunk and rebuilds bad copies (0: never).' },
  { env: 'DSTORE_JSON_BODY_LIMIT_BYTES', default: '16777216', used: 'coordinator', description: 'Largest JSON body of the routes that read it whole (query, update, delete, table); 413 above.' },
  { env: 'DSTORE_MAX_ROWS_PER_REQUEST', default: '10000000', used: 'coordinator', description: 'Records one POST may carry; 413 above.' },
  { env: 'DSTORE_MAX_RECORD_BYTES', default: '1048576', used: 'coordinator', description: 'Largest single record as JSON text (at most DSTORE_CHUNK_BYTES); 413 above.' },
  { env: 'DSTORE_MAX_FIELDS', default: '1000', used: 'coordinator', description: 'Top-level fields of one record (or of an update set); 400 above.' },
  { env: 'DSTORE_MAX_DEPTH', default: '32', used: 'coordinator', description: 'Nesting depth of objects and arrays inside one record value; 400 above.' },
  { env: 'DSTORE_QUERY_TIMEOUT_MS', default: '300000', used: 'coordinator', description: 'Longest a query may run; 504 (or a final _error line once rows were sent) after.' },
  { env: 'DSTORE_MAX_RESULT_ROWS', default: '10000000', used: 'coordinator', description: 'Rows one query may answer; a larger limit is a 400, a longer unlimited answer ends with an _error line.' },
  { env: 'DSTORE_TOKENS', default: 'none (no authentication)', used: 'coordinator', description: 'API tokens name:secret:role (read, write or admin), comma-separated; see docs/security.md.' },
  { env: 'DSTORE_TOKENS_FILE', default: 'none', used: 'coordinator', description: 'File of API tokens, one name:secret:role a line (# comments); adds to DSTORE_TOKENS.' },
  { env: 'DSTORE_INSECURE', default: '0', used: 'coordinator', description: 'Set to 1 to serve without tokens on a non-loopback DSTORE_HOST (anyone who reaches the port has admin rights).' },
  { env: 'DSTORE_ENCRYPTION_KEY', default: 'none (encrypted columns refused)', used: 'coordinator', description: 'Key of encrypted columns: 32 random bytes as base64 or 64 hex digits (`openssl rand -base64 32`); the same on every coordinator; never logged. See docs/security.md.' },
  { env: 'DSTORE_STATUS_TIMEOUT_MS', default: '2000', used: 'coordinator', description: 'How long GET /status and GET /metrics wait for each part of their Redis read; a part that takes longer is reported as incomplete.' },
  { env: 'DSTORE_FAILPOINT_SEND_JITTER_MS', default: '0', used: 'coordinator', description: 'Testing only: delays each XADD the coordinator makes to a worker stream by a random 0..N ms, as a slow link to one Redis node would (the write-order tests use it). Never set in production.' },
  { env: 'DSTORE_FAILPOINT_DISK_FULL_FILE', default: 'none', used: 'worker', description: 'Testing only: while a file exists at this path the worker\'s shard cannot grow (SQLite max_page_count), so writes fail as on a full disk; removing it frees the space again. Never set in production.' },
  { env: 'DSTORE_URL', default: 'http://127.0.0.1:7070', used: 'cli', description: 'Coordinator the CLI talks to (--url overrides).' },
  { env: 'DSTORE_TOKEN', default: 'none', used: 'cli', description: 'Secret the CLI sends as Authorization: Bearer.' },
];

/** One seed node of a Redis Cluster. */
export interface ClusterNode {
  host: string;
  port: number;
}

/** Settings shared by every process. */
export interface CommonOptions {
  /** Redis connection URL. @defaultValue `redis://127.0.0.1:6379` */
  redisUrl: string;
  /** Redis Cluster seed nodes; when set every connection is an ioredis Cluster. @defaultValue unset */
  redisClusterNodes?: ClusterNode[];
  /** Prefix of every key. @defaultValue `dstore` */
  prefix: string;
  /** pino level. @defaultValue `info` */
  logLevel: string;
  /** Log output. @defaultValue `pretty` on a TTY, else `json` */
  logFormat: 'json' | 'pretty';
  /** PEM text of the CA for a rediss:// Redis, read from `REDIS_TLS_CA_FILE` at start. @defaultValue none: the system CAs */
  redisTlsCa?: string;
}

/** Settings of a worker process. */
export interface WorkerOptions extends CommonOptions {
  /** Stable worker id; when absent one is generated and kept in `dataDir`. */
  workerId?: string;
  /** Where the shard lives. @defaultValue `./dstore-data` */
  dataDir: string;
  /** Heartbeat period. @defaultValue 1000 ms */
  heartbeatMs: number;
  /** Entries per XREADGROUP. @defaultValue 32 */
  opsBatch: number;
  /** Tries before an entry that keeps failing is dead-lettered. @defaultValue 5 */
  applyAttempts: number;
  /** Rows per FETCH_RESP. @defaultValue 1000 */
  fetchBatchRows: number;
  /** Bytes per FETCH_RESP. @defaultValue 256 KiB */
  fetchBatchBytes: number;
  /** SQLite `synchronous`. Full by default because an ack promises durability. @defaultValue `full` */
  sqliteSync: 'full' | 'normal';
  /** Testing only: while this file exists the shard cannot grow (a full disk). @defaultValue none */
  failpointDiskFullFile?: string;
}

/** Settings of a coordinator process. */
export interface CoordinatorOptions extends CommonOptions {
  /** Names the reply stream. @defaultValue generated at each start */
  coordinatorId?: string;
  /** @defaultValue `127.0.0.1` */
  host: string;
  /** @defaultValue 7070 */
  port: number;
  /** Copies of each chunk. @defaultValue 2 */
  replicas: number;
  /** Acks a chunk needs for the POST to succeed. @defaultValue 1 */
  minReplicas: number;
  /** @defaultValue 1000 */
  chunkRows: number;
  /** @defaultValue 1 MiB */
  chunkBytes: number;
  /** Chunks in flight per POST. @defaultValue 16 */
  ingestWindow: number;
  /** @defaultValue 30 s */
  ackTimeoutMs: number;
  /** @defaultValue 10 s */
  fetchTimeoutMs: number;
  /** FETCH_RESP batches per worker held for a read before the client takes them. @defaultValue 8 */
  fetchWindow: number;
  /** Heartbeat age after which a worker is not live; a few heartbeats, so one late beat is no failure. @defaultValue 5 s */
  workerTimeoutMs: number;
  /** @defaultValue 1 GiB */
  bodyLimitBytes: number;
  /** Lost for good after this long without a heartbeat: its chunks are re-homed. @defaultValue 60 s */
  repairAfterMs: number;
  /** @defaultValue 5 s */
  sweepMs: number;
  /** A coordinator silent this long is dead: clean-up aborts the POSTs it left open. @defaultValue 10 s */
  coordinatorTimeoutMs: number;
  /** How often scrub runs; 0 turns it off. @defaultValue 1 hour */
  scrubMs: number;
  /** Largest JSON body read whole (queries, updates, table definitions). @defaultValue 16 MiB */
  jsonBodyLimitBytes: number;
  /** Records per POST. @defaultValue 10,000,000 */
  maxRowsPerRequest: number;
  /** Largest record as JSON text; at most `chunkBytes`, since a record never spans chunks. @defaultValue 1 MiB */
  maxRecordBytes: number;
  /** Top-level fields per record. @defaultValue 1000 */
  maxFields: number;
  /** Nesting of objects/arrays inside a record. @defaultValue 32 */
  maxDepth: number;
  /** Longest a query may run. @defaultValue 5 minutes */
  queryTimeoutMs: number;
  /** Rows per query answer. @defaultValue 10,000,000 */
  maxResultRows: number;
  /** API tokens; empty means no authentication (loopback only unless `insecure`). @defaultValue none */
  tokens: ApiToken[];
  /** Serve without tokens on a non-loopback address. @defaultValue false */
  insecure: boolean;
  /** Master key of encrypted columns (`DSTORE_ENCRYPTION_KEY`); without it tables with encrypted columns are refused. @defaultValue none */
  encryptionKey?: Buffer;
  /** Time limit of each Redis read behind `/status` and `/metrics`; a scrape must not hang on a slow Redis. @defaultValue 2 s */
  statusTimeoutMs: number;
  /** Test-only fault injection: random delay (0..N ms) of each XADD to a worker stream. @defaultValue 0 */
  failpointSendJitterMs: number;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads and checks one integer setting. */
export function readInt(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Reads one setting that must be one of `choices`. */
export function readChoice<T extends string>(env: Env, name: string, def: T, choices: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase() as T;
  if (!choices.includes(v)) throw new ConfigError(name, `must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return v;
}

function readRedisUrl(env: Env): string {
  const raw = env.REDIS_URL?.trim() || 'redis://127.0.0.1:6379';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError('REDIS_URL', `is not a URL (expected redis://host:port or rediss://user:pass@host:port/db)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError('REDIS_URL', `must start with redis:// or rediss://, got ${u.protocol}//`);
  }
  return raw;
}

function readTlsCa(env: Env, redisUrl: string): string | undefined {
  const file = env.REDIS_TLS_CA_FILE?.trim();
  if (!file) return undefined;
  if (!redisUrl.startsWith('rediss://')) throw new ConfigError('REDIS_TLS_CA_FILE', 'is set but REDIS_URL is not rediss://; use rediss://host:port to talk TLS');
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError('REDIS_TLS_CA_FILE', `cannot read ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; give a readable PEM file`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('REDIS_TLS_CA_FILE', `${JSON.stringify(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}

/** Reads a 0/1 switch. */
export function readFlag(env: Env, name: string): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new ConfigError(name, `must be 0 or 1, got ${JSON.stringify(env[name])}`);
}

/** `DSTORE_TOKENS` and the lines of `DSTORE_TOKENS_FILE`, parsed. Never echoes a secret. */
export function readTokens(env: Env): ApiToken[] {
  const inline = (env.DSTORE_TOKENS ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((text, i) => ({ text, where: `entry ${i + 1}` }));
  const tokens = parseTokenEntries(inline, 'DSTORE_TOKENS');
  const file = env.DSTORE_TOKENS_FILE?.trim();
  if (!file) return tokens;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError('DSTORE_TOKENS_FILE', `cannot read ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const lines = text
    .split(/\r?\n/)
    .map((l, i) => ({ text: l.trim(), where: `line ${i + 1}` }))
    .filter((l) => l.text !== '' && !l.text.startsWith('#'));
  const fromFile = parseTokenEntries(lines, 'DSTORE_TOKENS_FILE');
  for (const t of fromFile) if (tokens.some((x) => x.name === t.name)) throw new ConfigError('DSTORE_TOKENS_FILE', `token name ${t.name} is also in DSTORE_TOKENS`);
  return [...tokens, ...fromFile];
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Parses REDIS_CLUSTER_NODES (`host:port,host:port`, IPv6 as `[::1]:7000`). */
export function readClusterNodes(env: Env): ClusterNode[] | undefined {
  const raw = env.REDIS_CLUSTER_NODES?.trim();
  if (!raw) return undefined;
  return raw.split(',').map((part) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(part.trim());
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new ConfigError('REDIS_CLUSTER_NODES', `must be a comma-separated list of host:port, got ${JSON.stringify(part.trim())}`);
    }
    return { host: m[1] ?? m[2], port };
  });
}

/** Reads the settings every process shares. */
export function loadCommonOptions(env: Env = process.env): CommonOptions {
  const prefix = env.DSTORE_PREFIX?.trim() || 'dstore';
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ConfigError('DSTORE_PREFIX', `must be 1-64 letters, digits, "_" or "-" (dstore adds the cluster hash tags itself), got ${JSON.stringify(prefix)}`);
  }
  const redisUrl = readRedisUrl(env);
  return {
    redisUrl,
    redisTlsCa: readTlsCa(env, redisUrl),
    redisClusterNodes: readClusterNodes(env),
    prefix,
    logLevel: readChoice(env, 'LOG_LEVEL', 'info', LEVELS),
    logFormat: readChoice(env, 'LOG_FORMAT', process.stdout.isTTY ? 'pretty' : 'json', ['json', 'pretty'] as const),
  };
}

/** Reads a worker's settings. */
export function loadWorkerOptions(env: Env = process.env): WorkerOptions {
  const workerId = env.DSTORE_WORKER_ID?.trim() || undefined;
  if (workerId !== undefined && !isValidName(workerId)) {
    throw new ConfigError('DSTORE_WORKER_ID', `must be 1-64 letters, digits, "_", "." or "-", got ${JSON.stringify(workerId)}`);
  }
  return {
    ...loadCommonOptions(env),
    workerId,
    dataDir: path.resolve(env.DSTORE_DATA_DIR?.trim() || 'dstore-data'),
    heartbeatMs: readInt(env, 'DSTORE_HEARTBEAT_MS', 1 * SECOND, 50, 1 * MINUTE),
    opsBatch: readInt(env, 'DSTORE_OPS_BATCH', 32, 1, 10_000),
    applyAttempts: readInt(env, 'DSTORE_APPLY_ATTEMPTS', 5, 1, 100),
    fetchBatchRows: readInt(env, 'DSTORE_FETCH_BATCH_ROWS', 1000, 1, 1_000_000),
    fetchBatchBytes: readInt(env, 'DSTORE_FETCH_BATCH_BYTES', 256 * 1024, 1024, 64 * MiB),
    sqliteSync: readChoice(env, 'DSTORE_SQLITE_SYNC', 'full', ['full', 'normal'] as const),
    failpointDiskFullFile: env.DSTORE_FAILPOINT_DISK_FULL_FILE?.trim() ? path.resolve(env.DSTORE_FAILPOINT_DISK_FULL_FILE.trim()) : undefined,
  };
}

/** Reads a coordinator's settings. */
export function loadCoordinatorOptions(env: Env = process.env): CoordinatorOptions {
  const coordinatorId = env.DSTORE_COORDINATOR_ID?.trim() || undefined;
  if (coordinatorId !== undefined && !isValidName(coordinatorId)) {
    throw new ConfigError('DSTORE_COORDINATOR_ID', `must be 1-64 letters, digits, "_", "." or "-", got ${JSON.stringify(coordinatorId)}`);
  }
  const host = env.DSTORE_HOST?.trim() || '127.0.0.1';
  const replicas = readInt(env, 'DSTORE_REPLICAS', 2, 1, 16);
  const minReplicas = readInt(env, 'DSTORE_MIN_REPLICAS', 1, 1, 16);
  if (minReplicas > replicas) throw new ConfigError('DSTORE_MIN_REPLICAS', `must not exceed DSTORE_REPLICAS (${replicas}), got ${minReplicas}`);
  const chunkBytes = readInt(env, 'DSTORE_CHUNK_BYTES', 1 * MiB, 1024, 64 * MiB);
  const maxRecordBytes = readInt(env, 'DSTORE_MAX_RECORD_BYTES', Math.min(1 * MiB, chunkBytes), 16, 64 * MiB);
  if (maxRecordBytes > chunkBytes) throw new ConfigError('DSTORE_MAX_RECORD_BYTES', `must not exceed DSTORE_CHUNK_BYTES (${chunkBytes}): a record never spans chunks; got ${maxRecordBytes}`);
  const tokens = readTokens(env);
  const insecure = readFlag(env, 'DSTORE_INSECURE');
  if (tokens.length === 0 && !insecure && !isLoopback(host)) {
    throw new ConfigError('DSTORE_HOST', `is ${host}, reachable from other machines, but no API tokens are set: set DSTORE_TOKENS (name:secret:role,…) or DSTORE_TOKENS_FILE, or DSTORE_INSECURE=1 to serve without authentication`);
  }
  return {
    ...loadCommonOptions(env),
    coordinatorId,
    host,
    port: readInt(env, 'DSTORE_PORT', 7070, 0, 65535),
    replicas,
    minReplicas,
    chunkRows: readInt(env, 'DSTORE_CHUNK_ROWS', 1000, 1, 1_000_000),
    chunkBytes,
    ingestWindow: readInt(env, 'DSTORE_INGEST_WINDOW', 16, 1, 10_000),
    ackTimeoutMs: readInt(env, 'DSTORE_ACK_TIMEOUT_MS', 30 * SECOND, 100, 60 * MINUTE),
    fetchTimeoutMs: readInt(env, 'DSTORE_FETCH_TIMEOUT_MS', 10 * SECOND, 100, 60 * MINUTE),
    fetchWindow: readInt(env, 'DSTORE_FETCH_WINDOW', 8, 1, 10_000),
    workerTimeoutMs: readInt(env, 'DSTORE_WORKER_TIMEOUT_MS', 5 * SECOND, 100, 60 * MINUTE),
    bodyLimitBytes: readInt(env, 'DSTORE_BODY_LIMIT_BYTES', 1024 * MiB, 1024, 64 * 1024 * MiB),
    repairAfterMs: readInt(env, 'DSTORE_REPAIR_AFTER_MS', 1 * MINUTE, 100, 7 * 24 * 60 * MINUTE),
    sweepMs: readInt(env, 'DSTORE_SWEEP_MS', 5 * SECOND, 100, 60 * MINUTE),
    coordinatorTimeoutMs: readInt(env, 'DSTORE_COORDINATOR_TIMEOUT_MS', 10 * SECOND, 500, 60 * MINUTE),
    scrubMs: readInt(env, 'DSTORE_SCRUB_MS', 60 * MINUTE, 0, 7 * 24 * 60 * MINUTE),
    jsonBodyLimitBytes: readInt(env, 'DSTORE_JSON_BODY_LIMIT_BYTES', 16 * MiB, 64, 1024 * MiB),
    maxRowsPerRequest: readInt(env, 'DSTORE_MAX_ROWS_PER_REQUEST', 10_000_000, 1, 1_000_000_000),
    maxRecordBytes,
    maxFields: readInt(env, 'DSTORE_MAX_FIELDS', 1000, 1, 100_000),
    maxDepth: readInt(env, 'DSTORE_MAX_DEPTH', 32, 1, 1000),
    queryTimeoutMs: readInt(env, 'DSTORE_QUERY_TIMEOUT_MS', 5 * MINUTE, 100, 24 * 60 * MINUTE),
    maxResultRows: readInt(env, 'DSTORE_MAX_RESULT_ROWS', 10_000_000, 1, 1_000_000_000),
    tokens,
    insecure,
    encryptionKey: env.DSTORE_ENCRYPTION_KEY?.trim() ? parseEncryptionKey(env.DSTORE_ENCRYPTION_KEY) : undefined,
    statusTimeoutMs: readInt(env, 'DSTORE_STATUS_TIMEOUT_MS', 2 * SECOND, 50, 1 * MINUTE),
    failpointSendJitterMs: readInt(env, 'DSTORE_FAILPOINT_SEND_JITTER_MS', 0, 0, 1 * SECOND),
  };
}

/** The coordinator URL the CLI talks to. */
export function readCliUrl(env: Env = process.env, flag?: string): string {
  const raw = flag || env.DSTORE_URL?.trim() || 'http://127.0.0.1:7070';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(flag ? '--url' : 'DSTORE_URL', `is not a URL (expected http://host:port), got ${JSON.stringify(raw)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(flag ? '--url' : 'DSTORE_URL', `must start with http:// or https://`);
  return raw.replace(/\/+$/, '');
}

/** The secret the CLI sends as `Authorization: Bearer`, from `DSTORE_TOKEN`. */
export function readCliToken(env: Env = process.env): string | undefined {
  const t = env.DSTORE_TOKEN?.trim();
  if (!t) return undefined;
  if (/[\s,]/.test(t)) throw new ConfigError('DSTORE_TOKEN', 'must be the secret alone (no spaces or commas), not name:secret:role');
  return t;
}

export { SECOND, MINUTE, MiB };
