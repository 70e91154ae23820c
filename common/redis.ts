import Redis, { type RedisOptions } from 'ioredis';
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
  url: string;
  /** Shown in `CLIENT LIST` as `<prefix>:<name>` so operators see who is who. */
  name: string;
  role: ConnectionRole;
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
}

export type DstoreRedis = Redis & DstoreCommands;

/** A pipeline on which the dstore scripts can be queued. */
export type DstorePipeline = { [K in keyof DstoreCommands]: (...args: Parameters<DstoreCommands[K]>) => DstorePipeline };

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
      return { name, numberOfKeys: m[2] === undefined ? undefined : Number(m[2]), lua: fs.readFileSync(path.join(LUA_DIR, f), 'utf8') };
    });
}

let scripts: ReturnType<typeof loadScripts> | undefined;

/**
 * Opens a named connection from a redis:// or rediss:// URL. Reconnects forever with
 * capped backoff: a Redis restart must not take dstore processes down with it.
 */
export function createRedis(opts: ConnectionOptions): DstoreRedis {
  const base: RedisOptions = {
    connectionName: opts.name,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // Blocking readers and subscribers wait as long as it takes; commands give up after a
    // few reconnects so a caller sees an error instead of hanging.
    maxRetriesPerRequest: opts.role === 'command' ? 20 : null,
    enableAutoPipelining: opts.role === 'command',
  };
  const conn = new Redis(opts.url, base) as DstoreRedis;
  if (opts.role === 'command') {
    scripts ??= loadScripts();
    for (const s of scripts) conn.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
  return conn;
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
export async function closeAll(...conns: (Redis | undefined)[]): Promise<void> {
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
