import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Redis, { Cluster } from 'ioredis';
import type { StartedTestContainer } from 'testcontainers';
import { keepTemp, tailFile, tempDir } from './processes';

/** A Redis for tests. */
export interface TestRedis {
  /** redis://host:port of it. */
  url: string;
  /**
   * How it was obtained: REDIS_URL (or REDIS_CLUSTER_NODES), a testcontainers container, a
   * local redis-server child, or a three-master Redis Cluster of local redis-server children.
   */
  kind: 'env' | 'container' | 'local' | 'cluster';
  /** For a Redis Cluster: its nodes as REDIS_CLUSTER_NODES spells them (`url` is one of them). */
  clusterNodes?: string;
  /** Shuts it down and removes its files; a no-op for `env` (that Redis is not ours). */
  stop(): Promise<void>;
  /**
   * Restarts the same instance on the same port (and, locally, the same dir), resolving once
   * it answers PING again. By default the server is killed (SIGKILL), like a crash; with
   * `graceful` it is shut down cleanly. Only what its persistence kept survives: start it with
   * `{ appendonly: true }` to keep everything acknowledged. Absent on `env`.
   */
  restart?(opts?: { graceful?: boolean }): Promise<void>;
  /** The server's process id when it is a child of this process (`local`), e.g. to read its CPU from /proc. */
  readonly pid?: number;
}

/** Options of {@link startRedis}. */
export interface StartRedisOptions {
  /**
   * AOF on with `appendfsync always`, for crash and restart tests. Such a Redis is always
   * started by the harness (REDIS_URL is then ignored): the persistence of a Redis we did not
   * start is not ours to choose, and we could not restart it.
   */
  appendonly?: boolean;
}

const READY_DEADLINE_MS = 10_000;
const INSTALL_HINT =
  'Install Redis (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis), ' +
  'run a container runtime (Docker) for testcontainers, or set REDIS_URL=redis://host:port ' +
  'to a Redis the tests may use (they only touch keys under their own prefix).';

/** Every instance started here and not yet stopped, for the root hook's cleanup. */
const running = new Set<TestRedis>();
let shared: Promise<TestRedis> | undefined;
let sharedInstance: TestRedis | undefined;

/** Finds a free loopback TCP port by letting the kernel pick one. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Sends one command over a raw connection and resolves with the first reply line (e.g.
 * `+PONG`, `-LOADING …`), or '' if the server closed the connection without replying (what
 * a successful SHUTDOWN does). Raw RESP avoids ioredis' reconnect logic while probing.
 */
function rawCommand(port: number, args: string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    let settled = false;
    const finish = (err: Error | undefined, line?: string) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(line ?? '');
    };
    sock.setTimeout(timeoutMs, () => finish(new Error(`no reply within ${timeoutMs}ms`)));
    sock.once('error', (err) => finish(err));
    sock.once('close', () => finish(undefined, buf));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      const eol = buf.indexOf('\r\n');
      if (eol >= 0) finish(undefined, buf.slice(0, eol));
    });
    sock.once('connect', () => {
      sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
  });
}

function onPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, bin);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A redis-server child of this process, on 127.0.0.1:`port` with its own dir. */
class LocalRedis implements TestRedis {
  readonly kind = 'local' as const;
  readonly url: string;
  readonly logFile: string;
  private proc: ChildProcess | undefined;
  private exit: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly bin: string,
    readonly port: number,
    readonly dir: string,
    private readonly appendonly: boolean,
    private readonly extraArgs: string[] = [],
  ) {
    this.url = `redis://127.0.0.1:${port}`;
    this.logFile = path.join(dir, 'redis.log');
  }

  /** The running server process, for the exit-time SIGKILL. */
  get child(): ChildProcess | undefined {
    return this.proc;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Spawns redis-server and waits until it answers PING (it answers -LOADING while replaying the AOF). */
  async launch(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--daemonize',
      'no',
      ...(this.appendonly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      ...this.extraArgs,
    ];
    const fd = fs.openSync(this.logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(this.bin, args, { cwd: this.dir, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    proc.on('error', (err) => fs.appendFileSync(this.logFile, `[harness] redis-server error: ${err.message}\n`));
    let exited = false;
    this.exit = new Promise((resolve) =>
      proc.once('exit', () => {
        exited = true;
        resolve();
      }),
    );
    this.proc = proc;

    const deadline = Date.now() + READY_DEADLINE_MS;
    let last = '';
    while (Date.now() < deadline) {
      if (exited) break;
      try {
        last = await rawCommand(this.port, ['PING'], 500);
        if (last === '+PONG') return;
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const why = exited ? 'exited during startup' : `did not answer PING within ${READY_DEADLINE_MS}ms (last: ${last})`;
    await this.kill();
    throw new Error(
      `redis-server on port ${this.port} ${why}; ${this.logFile} ends with:\n${tailFile(this.logFile, 20)}`,
    );
  }

  private async kill(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exit;
  }

  /** SHUTDOWN (NOSAVE unless `save`), SIGKILL if it is still running after 5 s. */
  private async shutdown(save: boolean): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await rawCommand(this.port, save ? ['SHUTDOWN'] : ['SHUTDOWN', 'NOSAVE'], 5_000).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 5_000)));
    const r = await Promise.race([this.exit, t]);
    clearTimeout(timer);
    if (r === 'timeout') await this.kill();
  }

  async restart(opts: { graceful?: boolean } = {}): Promise<void> {
    if (this.stopped) throw new Error(`redis on port ${this.port} was stopped; it cannot be restarted`);
    if (opts.graceful) await this.shutdown(true);
    else await this.kill();
    fs.appendFileSync(this.logFile, `[harness] restarting (${opts.graceful ? 'graceful' : 'SIGKILL'})\n`);
    await this.launch();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    running.delete(this);
    await this.shutdown(false);
    if (!keepTemp()) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

let runtimeCheck: Promise<string | undefined> | undefined;

/**
 * Resolves undefined when a container runtime answers, else the reason it does not.
 * testcontainers fails fast when there is none; the timeout guards against a DOCKER_HOST
 * that points at something that never answers.
 */
function containerRuntimeProblem(): Promise<string | undefined> {
  runtimeCheck ??= (async () => {
    try {
      const tc: typeof import('testcontainers') = require('testcontainers');
      let timer: NodeJS.Timeout | undefined;
      const t = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
        timer.unref();
      });
      try {
        await Promise.race([tc.getContainerRuntimeClient(), t]);
      } finally {
        clearTimeout(timer);
      }
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  })();
  return runtimeCheck;
}

async function startContainer(appendonly: boolean): Promise<TestRedis> {
  const tc: typeof import('testcontainers') = require('testcontainers');
  // A fixed host port (instead of a random mapping) keeps the URL valid across restart().
  const port = await freePort();
  const container: StartedTestContainer = await new tc.GenericContainer('redis:7')
    .withExposedPorts({ container: 6379, host: port })
    .withCommand([
      'redis-server',
      '--save',
      '',
      ...(appendonly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ])
    .withWaitStrategy(tc.Wait.forLogMessage('Ready to accept connections'))
    .start();
  let stopped = false;
  const r: TestRedis = {
    kind: 'container',
    url: `redis://${container.getHost()}:${port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      running.delete(r);
      await container.stop({ timeout: 0 });
    },
    async restart(opts: { graceful?: boolean } = {}) {
      await container.restart({ timeout: opts.graceful ? 10_000 : 0 });
    },
  };
  return r;
}

async function startLocal(bin: string, appendonly: boolean, extraArgs: string[] = []): Promise<LocalRedis> {
  let lastErr: Error | undefined;
  // Another process may grab the port between freePort() and redis-server's bind.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = tempDir('redis');
    const r = new LocalRedis(bin, await freePort(), dir, appendonly, extraArgs);
    running.add(r);
    try {
      await r.launch();
      return r;
    } catch (err) {
      running.delete(r);
      lastErr = err as Error;
      const inUse = /Address already in use/i.test(tailFile(r.logFile, 20));
      if (!keepTemp()) fs.rmSync(dir, { recursive: true, force: true });
      if (!inUse) break;
    }
  }
  throw lastErr ?? new Error('redis-server did not start');
}

/**
 * Provides a Redis: REDIS_URL if set (unless `appendonly`) → a redis:7 container when a
 * container runtime answers → `redis-server` from PATH on a free loopback port with a fresh
 * temp dir → otherwise throws an Error saying how to install Redis. Never skips silently.
 * Every instance is registered; the root hook stops those a test leaves running.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const appendonly = opts.appendonly ?? false;
  if (process.env.REDIS_URL && !appendonly) {
    return { kind: 'env', url: process.env.REDIS_URL, stop: async () => undefined };
  }
  const problem = await containerRuntimeProblem();
  const bin = onPath('redis-server');
  let containerError: Error | undefined;
  if (problem === undefined) {
    try {
      const r = await startContainer(appendonly);
      running.add(r);
      return r;
    } catch (err) {
      containerError = err as Error;
      if (!bin) throw new Error(`could not start a redis:7 container (${containerError.message}). ${INSTALL_HINT}`);
      console.error(`[test harness] redis:7 container failed (${containerError.message}); using ${bin}`);
    }
  }
  if (!bin) {
    throw new Error(
      `no Redis for the tests: REDIS_URL is not set, no container runtime answered (${problem}) ` +
        `and redis-server is not on PATH. ${INSTALL_HINT}`,
    );
  }
  return startLocal(bin, appendonly);
}

/** Servers of running clusters, for the exit-time SIGKILL. */
const clusterMembers = new Set<LocalRedis>();

/** Clusters by url, so that helpers given only a url (dropPrefix, TestCluster) find the nodes. */
const clusters = new Map<string, string>();

/** The REDIS_CLUSTER_NODES value of the test Redis at `url`, if it is a cluster. */
export function clusterNodesOf(url: string): string | undefined {
  return clusters.get(url);
}

function parseNodes(nodes: string): { host: string; port: number }[] {
  return nodes.split(',').map((n) => {
    const i = n.lastIndexOf(':');
    return { host: n.slice(0, i), port: Number(n.slice(i + 1)) };
  });
}

/**
 * A client of the test Redis at `url`: an ioredis Cluster when it is a cluster (typed as
 * Redis, whose command methods Cluster shares), else a plain Redis.
 */
export function testClient(url: string, name: string): Redis {
  const nodes = clusterNodesOf(url);
  if (!nodes) return new Redis(url, { connectionName: name });
  return new Cluster(parseNodes(nodes), { redisOptions: { connectionName: name } }) as unknown as Redis;
}

/**
 * Starts a Redis Cluster of three masters (no replicas) on loopback: three redis-server
 * children with `--cluster-enabled yes`, joined by `redis-cli --cluster create`, resolved
 * once every node reports `cluster_state:ok`. With REDIS_CLUSTER_NODES set, that cluster
 * is used instead (only keys under each test's prefix are touched).
 */
export async function startRedisCluster(): Promise<TestRedis> {
  if (process.env.REDIS_CLUSTER_NODES) {
    const nodes = process.env.REDIS_CLUSTER_NODES;
    const url = `redis://${nodes.split(',')[0]}`;
    clusters.set(url, nodes);
    return { kind: 'env', url, clusterNodes: nodes, stop: async () => undefined };
  }
  const bin = onPath('redis-server');
  const cli = onPath('redis-cli');
  if (!bin || !cli) throw new Error(`a test Redis Cluster needs redis-server and redis-cli on PATH. ${INSTALL_HINT}`);
  const masters: LocalRedis[] = [];
  const stopAll = async () => {
    await Promise.all(masters.map((m) => m.stop()));
    for (const m of masters) clusterMembers.delete(m);
  };
  try {
    for (let i = 0; i < 3; i++) {
      masters.push(
        await startLocal(bin, false, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '5000',
        ]),
      );
    }
    const addrs = masters.map((m) => `127.0.0.1:${m.port}`);
    await new Promise<void>((resolve, reject) => {
      const p = spawn(cli, ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.once('error', reject);
      p.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create exited ${code}:\n${out.slice(-2000)}`)),
      );
    });
    const deadline = Date.now() + 20_000;
    for (const m of masters) {
      const c = new Redis(m.url, { maxRetriesPerRequest: 1 });
      try {
        while (!/cluster_state:ok/.test(await c.cluster('INFO'))) {
          if (Date.now() > deadline)
            throw new Error(`Redis Cluster node ${m.url} did not reach cluster_state:ok within 20 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        c.disconnect();
      }
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  const nodes = masters.map((m) => `127.0.0.1:${m.port}`).join(',');
  // The cluster is tracked as one instance; the exit hook still kills its members.
  for (const m of masters) {
    running.delete(m);
    clusterMembers.add(m);
  }
  let stopped = false;
  const r: TestRedis = {
    kind: 'cluster',
    url: masters[0].url,
    clusterNodes: nodes,
    async stop() {
      if (stopped) return;
      stopped = true;
      running.delete(r);
      clusters.delete(r.url);
      await stopAll();
    },
  };
  clusters.set(r.url, nodes);
  running.add(r);
  return r;
}

/**
 * Every key matching any of `patterns` (e.g. makeKeys(p).patterns), by SCAN on the one
 * server or on every master of a cluster client (a cluster SCAN only sees one node).
 */
export async function scanKeys(client: Redis, patterns: readonly string[]): Promise<string[]> {
  const nodes = client.isCluster ? (client as unknown as Cluster).nodes('master') : [client];
  const found = new Set<string>();
  for (const node of nodes) {
    for (const pattern of patterns) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        for (const k of keys) found.add(k);
      } while (cursor !== '0');
    }
  }
  return [...found];
}

/** Whether this run targets a Redis Cluster (`npm run test:cluster` sets DSTORE_TEST_REDIS=cluster). */
export function clusterMode(): boolean {
  return process.env.DSTORE_TEST_REDIS === 'cluster';
}

/**
 * The Redis shared by the whole mocha run: started on first call, stopped by the root hook.
 * A three-master cluster when DSTORE_TEST_REDIS=cluster.
 */
export function sharedRedis(): Promise<TestRedis> {
  shared ??= (clusterMode() ? startRedisCluster() : startRedis()).then((r) => (sharedInstance = r));
  return shared;
}

/**
 * Stops the shared Redis and every other instance still running. Resolves with a description
 * of each non-shared instance a test had left running (a leak).
 */
export async function stopAllRedis(): Promise<string[]> {
  const leaked = [...running].filter((r) => r !== sharedInstance).map((r) => `${r.kind} redis ${r.url}`);
  await Promise.all([...running].map((r) => r.stop().catch(() => undefined)));
  shared = undefined;
  sharedInstance = undefined;
  return leaked;
}

/** A fresh unique key prefix for one test: "t" + random base36, only [a-z0-9]. */
export function uniquePrefix(): string {
  return `t${BigInt(`0x${randomBytes(10).toString('hex')}`).toString(36)}`;
}

/**
 * Deletes every key of a dstore prefix (`<prefix>:*` and `{<prefix>}:*`, see
 * makeKeys().patterns; SCAN + UNLINK, one batch per SCAN page, on every node of a cluster),
 * never anything else: glob characters are escaped and each key is checked again.
 */
export async function dropPrefix(url: string, prefix: string): Promise<void> {
  if (!prefix) throw new Error('dropPrefix: empty prefix');
  const escape = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&');
  const heads = [`${prefix}:`, `{${prefix}}:`].map((h) => Buffer.from(h));
  const patterns = heads.map((h) => `${escape(h.toString())}*`);
  const nodes = clusterNodesOf(url);
  const urls = nodes ? nodes.split(',').map((n) => `redis://${n}`) : [url];
  for (const u of urls) {
    const conn = new Redis(u, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
    conn.on('error', () => undefined); // failures reach the caller through the rejected command
    try {
      await conn.connect();
      for (const pattern of patterns) {
        let cursor = '0';
        do {
          const [next, keys] = await conn.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next.toString();
          const mine = keys.filter((k) => heads.some((h) => k.subarray(0, h.length).equals(h)));
          // On a cluster node each key is deleted alone: one UNLINK may not span slots.
          if (nodes) for (const k of mine) await conn.unlink(k);
          else if (mine.length > 0) await conn.unlink(...mine);
        } while (cursor !== '0');
      }
    } finally {
      conn.disconnect();
    }
  }
}

// Last resort when the run ends abruptly: no redis-server may outlive it.
process.on('exit', () => {
  for (const r of [...running, ...clusterMembers]) {
    if (r instanceof LocalRedis) r.child?.kill('SIGKILL');
  }
});
