import * as fs from 'node:fs';
import { ConfigError } from './errors';
import { parseEncryptionKey } from './field-crypto';
import type { Env } from './setting-kinds';
import { readFlagAs, readOne, readSettings } from './settings';
import { parseTokenEntries, type ApiToken } from './tokens';

/**
 * Reads the options of each process from the environment. Defaults, bounds and the
 * variable behind each option are in the settings table (common/settings.ts); this
 * module reads through it, then applies the rules that span several settings. A wrong
 * value stops the process with one line naming the variable (see {@link ConfigError});
 * entry points print `err.message` and exit 1.
 */

/** One seed node of a Redis Cluster. */
export interface ClusterNode {
  host: string;
  port: number;
}

/** Settings shared by every process; defaults and variables in `SETTINGS` (common/settings.ts). */
export interface CommonOptions {
  /** Redis connection URL. */
  redisUrl: string;
  /** Redis Cluster seed nodes; when set every connection is an ioredis Cluster. */
  redisClusterNodes?: ClusterNode[];
  /** Prefix of every key. */
  prefix: string;
  /** pino level. */
  logLevel: string;
  /** Log output. */
  logFormat: 'json' | 'pretty';
  /** PEM text of the CA for a rediss:// Redis, read from `REDIS_TLS_CA_FILE` at start; absent: the system CAs. */
  redisTlsCa?: string;
}

/** Settings of a worker process; defaults and variables in `SETTINGS` (common/settings.ts). */
export interface WorkerOptions extends CommonOptions {
  /** Stable worker id; when absent one is generated and kept in `dataDir`. */
  workerId?: string;
  /** Where the shard lives (absolute). */
  dataDir: string;
  /** Heartbeat period. */
  heartbeatMs: number;
  /** Entries per XREADGROUP. */
  opsBatch: number;
  /** Tries before an entry that keeps failing is dead-lettered. */
  applyAttempts: number;
  /** Rows per FETCH_RESP. */
  fetchBatchRows: number;
  /** Bytes per FETCH_RESP. */
  fetchBatchBytes: number;
  /** SQLite `synchronous`. */
  sqliteSync: 'full' | 'normal';
  /** SQLite `mmap_size` of the read connections (0: off). */
  sqliteMmapBytes: number;
  /** Testing only: while this file exists the shard cannot grow (a full disk). */
  failpointDiskFullFile?: string;
  /** Testing only: how long each index build holds the write lock before it runs. */
  failpointIndexBuildMs: number;
}

/** Settings of a coordinator process; defaults and variables in `SETTINGS` (common/settings.ts). */
export interface CoordinatorOptions extends CommonOptions {
  /** Names the reply stream; absent: generated at each start. */
  coordinatorId?: string;
  host: string;
  port: number;
  /** Copies of each chunk. */
  replicas: number;
  /** Acks a chunk needs for the POST to succeed; at most `replicas`. */
  minReplicas: number;
  chunkRows: number;
  chunkBytes: number;
  /** Chunks in flight per POST. */
  ingestWindow: number;
  ackTimeoutMs: number;
  fetchTimeoutMs: number;
  /** FETCH_RESP batches per worker held for a read before the client takes them. */
  fetchWindow: number;
  /** Heartbeat age after which a worker is not live. */
  workerTimeoutMs: number;
  bodyLimitBytes: number;
  /** Lost for good after this long without a heartbeat: its chunks are re-homed. */
  repairAfterMs: number;
  sweepMs: number;
  /** A coordinator silent this long is dead: clean-up aborts the POSTs it left open. */
  coordinatorTimeoutMs: number;
  /** How often scrub runs; 0 turns it off. */
  scrubMs: number;
  /** Largest JSON body read whole (queries, updates, table definitions). */
  jsonBodyLimitBytes: number;
  /** Records per POST. */
  maxRowsPerRequest: number;
  /** Largest record as JSON text; at most `chunkBytes`, since a record never spans chunks. */
  maxRecordBytes: number;
  /** Top-level fields per record. */
  maxFields: number;
  /** Nesting of objects/arrays inside a record. */
  maxDepth: number;
  /** Longest a query may run. */
  queryTimeoutMs: number;
  /** Rows per query answer. */
  maxResultRows: number;
  /** API tokens; empty means no authentication (loopback only unless `insecure`). */
  tokens: ApiToken[];
  /** Serve without tokens on a non-loopback address. */
  insecure: boolean;
  /** Master key of encrypted columns; without it tables with encrypted columns are refused. */
  encryptionKey?: Buffer;
  /** Time limit of each Redis read behind `/status` and `/metrics`. */
  statusTimeoutMs: number;
  /** Test-only fault injection: random delay (0..N ms) of each XADD to a worker stream. */
  failpointSendJitterMs: number;
  /** Test-only: exit after the N-th UPDATE/DELETE of a table with changes on is sent, before its events move. */
  failpointExitAfterSend: number;
}

/** Reads the settings every process shares. */
export function loadCommonOptions(env: Env = process.env): CommonOptions {
  const s = readSettings(env, 'all');
  return {
    ...s,
    redisClusterNodes: parseClusterNodes(s.redisClusterNodes),
    redisTlsCa: readTlsCa(s.redisTlsCa, s.redisUrl),
  };
}

/** Reads a worker's settings. */
export function loadWorkerOptions(env: Env = process.env): WorkerOptions {
  return { ...loadCommonOptions(env), ...readSettings(env, 'worker') };
}

/** Reads a coordinator's settings. */
export function loadCoordinatorOptions(env: Env = process.env): CoordinatorOptions {
  const { tokens: tokenEntries, tokensFile, encryptionKey, ...s } = readSettings(env, 'coordinator');
  checkMinReplicas(s);
  const maxRecordBytes = fitRecordToChunk(env, s);
  const tokens = readTokens(tokenEntries, tokensFile);
  checkExposure(s.host, tokens, s.insecure);
  return {
    ...loadCommonOptions(env),
    ...s,
    maxRecordBytes,
    tokens,
    encryptionKey: encryptionKey === undefined ? undefined : parseEncryptionKey(encryptionKey),
  };
}

function checkMinReplicas(o: { replicas: number; minReplicas: number }): void {
  if (o.minReplicas > o.replicas)
    throw new ConfigError(
      'DSTORE_MIN_REPLICAS',
      `must not exceed DSTORE_REPLICAS (${o.replicas}), got ${o.minReplicas}`,
    );
}

/**
 * A record never spans chunks: an unset DSTORE_MAX_RECORD_BYTES follows a smaller DSTORE_CHUNK_BYTES; a set one must
 * fit.
 */
function fitRecordToChunk(env: Env, o: { chunkBytes: number; maxRecordBytes: number }): number {
  if (!env.DSTORE_MAX_RECORD_BYTES) return Math.min(o.maxRecordBytes, o.chunkBytes);
  if (o.maxRecordBytes > o.chunkBytes)
    throw new ConfigError(
      'DSTORE_MAX_RECORD_BYTES',
      `must not exceed DSTORE_CHUNK_BYTES (${o.chunkBytes}): a record never spans chunks; got ${o.maxRecordBytes}`,
    );
  return o.maxRecordBytes;
}

function checkExposure(host: string, tokens: ApiToken[], insecure: boolean): void {
  if (tokens.length === 0 && !insecure && !isLoopback(host)) {
    throw new ConfigError(
      'DSTORE_HOST',
      `is ${host}, reachable from other machines, but no API tokens are set: set DSTORE_TOKENS (name:secret:role,…) or DSTORE_TOKENS_FILE, or DSTORE_INSECURE=1 to serve without authentication`,
    );
  }
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The PEM text of `REDIS_TLS_CA_FILE`, which only a rediss:// `redisUrl` may use. */
function readTlsCa(file: string | undefined, redisUrl: string): string | undefined {
  if (!file) return undefined;
  if (!redisUrl.startsWith('rediss://'))
    throw new ConfigError(
      'REDIS_TLS_CA_FILE',
      'is set but REDIS_URL is not rediss://; use rediss://host:port to talk TLS',
    );
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      'REDIS_TLS_CA_FILE',
      `cannot read ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; give a readable PEM file`,
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError(
      'REDIS_TLS_CA_FILE',
      `${JSON.stringify(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  return pem;
}

/** The parts of `REDIS_CLUSTER_NODES` (`host:port`, IPv6 as `[::1]:7000`) as seed nodes. */
export function parseClusterNodes(parts: string[] | undefined): ClusterNode[] | undefined {
  return parts?.map((part) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new ConfigError(
        'REDIS_CLUSTER_NODES',
        `must be a comma-separated list of host:port, got ${JSON.stringify(part)}`,
      );
    }
    return { host: m[1] ?? m[2], port };
  });
}

/** The entries of `DSTORE_TOKENS` and the lines of the `DSTORE_TOKENS_FILE` file, parsed. Never echoes a secret. */
export function readTokens(entries: string[] | undefined, file: string | undefined): ApiToken[] {
  const inline = (entries ?? []).filter(Boolean).map((text, i) => ({ text, where: `entry ${i + 1}` }));
  const tokens = parseTokenEntries(inline, 'DSTORE_TOKENS');
  if (!file) return tokens;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      'DSTORE_TOKENS_FILE',
      `cannot read ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const lines = text
    .split(/\r?\n/)
    .map((l, i) => ({ text: l.trim(), where: `line ${i + 1}` }))
    .filter((l) => l.text !== '' && !l.text.startsWith('#'));
  const fromFile = parseTokenEntries(lines, 'DSTORE_TOKENS_FILE');
  for (const t of fromFile)
    if (tokens.some((x) => x.name === t.name))
      throw new ConfigError('DSTORE_TOKENS_FILE', `token name ${t.name} is also in DSTORE_TOKENS`);
  return [...tokens, ...fromFile];
}

/** The coordinator URL the CLI talks to: `flag` (`--url`), else `DSTORE_URL`, else its default. */
export function readCliUrl(env: Env = process.env, flag?: string): string {
  const url = flag ? readFlagAs('DSTORE_URL', flag, '--url') : readOne(env, 'DSTORE_URL');
  return url.replace(/\/+$/, '');
}

/** The secret the CLI sends as `Authorization: Bearer`, from `DSTORE_TOKEN`. */
export function readCliToken(env: Env = process.env): string | undefined {
  return readOne(env, 'DSTORE_TOKEN');
}

export { readInt, type Env } from './setting-kinds';
export { SECOND, MINUTE, MiB } from './units';
