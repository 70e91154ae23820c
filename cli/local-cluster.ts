import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Redis from 'ioredis';
import { loadCommonOptions, type CommonOptions } from '../common/config';
import { makeKeys, type Keys } from '../common/keys';
import { closeAll, createRedis, maskRedisUrl, withTimeout, type DstoreRedis } from '../common/redis';
import { readOne } from '../common/settings';
import { SUPERVISOR_PID_ENV } from '../common/supervisor-watch';
import { WorkerDirectory } from '../coordinator/membership';
import { freeWorkerId, planWorkers, readKnownWorkers, type LocalWorker } from './local-workers';
import { SupervisedProcess, type ExitInfo } from './supervisor';

/** Options of {@link LocalCluster}. */
export interface LocalClusterOptions {
  /** Active workers wanted (more run when the data dir holds more shards). */
  workers: number;
  /** Replication factor. @defaultValue 2 (or DSTORE_REPLICAS) */
  replicas?: number;
  /** Coordinator port; 0 picks a free one. @defaultValue 7070 */
  port: number;
  /** Where shards, Redis data and logs go. */
  dataDir: string;
  /** Use this Redis instead of starting one. @defaultValue REDIS_URL */
  redisUrl?: string;
  /** Extra environment for every child. */
  env?: Record<string, string>;
  /** Progress lines for people (stdout). */
  say?: (line: string) => void;
  /** One line per supervision event: a child that died, and its restart (stderr). */
  report?: (line: string) => void;
  /** Restart a worker, the coordinator or redis-server that dies. @defaultValue true */
  restart?: boolean;
  /** How long the start may take until every worker is live. @defaultValue 60000 */
  startTimeoutMs?: number;
}

/** A setting of `dstore up` that cannot be used: the message names the flag. */
class UsageError extends Error {}

const ROOT = path.resolve(__dirname, '..', '..');

/** A free loopback TCP port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when `host:port` can be listened on; otherwise rejects with the listen error. */
function canListen(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve()));
  });
}

/** Whether a process runs under `pid`, and (where /proc tells) its command line contains `needle`. */
function processAlive(pid: number, needle: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
  } catch {
    return true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `p` for people: relative to the working directory when inside it (`./dstore-data/w4`), else absolute. */
export function shownPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  if (!rel) return '.';
  return rel.startsWith('..') || path.isAbsolute(rel) ? p : `./${rel}`;
}

/** A shell word: as is when safe, else single-quoted. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A whole dstore on one machine, supervised: Redis (REDIS_URL, or a `redis-server` started
 * here with AOF on), one coordinator and the workers as child processes, logs under
 * `<dataDir>/logs`. It starts the active workers found in the data dir whatever was drained
 * or retired before, with new ones (new ids, new dirs) up to the number asked for; restarts a
 * child that dies (exponential backoff, one reported line each); `stop()` ends every child
 * it started, Redis last.
 */
export class LocalCluster {
  url = '';
  redisUrl = '';
  /** The settings every child shares (prefix, Redis), once started. */
  common?: CommonOptions;
  /** The workers started, and the retired ones found and left alone. */
  workers: LocalWorker[] = [];
  retired: LocalWorker[] = [];
  private coordinator?: SupervisedProcess;
  private readonly workerProcs: SupervisedProcess[] = [];
  private redisProc?: SupervisedProcess;
  private cmd?: DstoreRedis;
  private lockFile?: string;
  private stopped = false;

  constructor(readonly opts: LocalClusterOptions) {}

  private say(line: string): void {
    this.opts.say?.(line);
  }

  private report(line: string): void {
    (this.opts.report ?? this.opts.say)?.(line);
  }

  private get logDir(): string {
    return path.join(this.opts.dataDir, 'logs');
  }

  /**
   * Starts everything; resolves with the coordinator URL once every active worker is live.
   * Throws a {@link UsageError} naming `--data-dir` or `--port` at once when one is unusable,
   * and an Error of one line when a child dies during the start.
   */
  async start(): Promise<string> {
    // A bad DSTORE_PREFIX or REDIS_CLUSTER_NODES is told before anything starts.
    loadCommonOptions({ ...process.env, ...this.opts.env, REDIS_URL: this.opts.redisUrl });
    this.claimDataDir();
    const port = this.opts.port === 0 ? await freePort() : this.opts.port;
    await canListen('127.0.0.1', port).catch((e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'EADDRINUSE'
          ? `127.0.0.1:${port} is already in use (another dstore up or coordinator?); choose another --port, or --port 0 for a free one`
          : `cannot listen on 127.0.0.1:${port} (${e.code ?? e.message})`;
      throw new UsageError(`--port ${port}: ${why}`);
    });
    this.redisUrl = this.opts.redisUrl ?? (await this.startRedis());
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.opts.env, REDIS_URL: this.redisUrl };
    this.common = loadCommonOptions(env);
    const keys = makeKeys(this.common.prefix);
    this.cmd = createRedis({
      url: this.redisUrl,
      clusterNodes: this.common.redisClusterNodes,
      tlsCa: this.common.redisTlsCa,
      name: `${keys.prefix}:up`,
      role: 'command',
    });
    this.cmd.on('error', () => undefined); // reported by the waits below
    const where = `${this.common.redisClusterNodes ? 'the Redis Cluster (REDIS_CLUSTER_NODES)' : `Redis at ${maskRedisUrl(this.redisUrl)}`}${this.opts.redisUrl ? ' (REDIS_URL)' : ''}`;
    const known = await withTimeout(readKnownWorkers(this.cmd, keys), 10_000).catch((e: Error) => {
      throw new Error(`cannot read the cluster from ${where}: ${e.message}`);
    });
    if (!known) throw new Error(`cannot reach ${where} within 10 s`);
    const plan = planWorkers(this.opts.dataDir, this.opts.workers, known);
    this.workers = plan.start;
    this.retired = plan.retired;

    const base: NodeJS.ProcessEnv = {
      ...env,
      LOG_FORMAT: 'json',
      [SUPERVISOR_PID_ENV]: String(process.pid),
      ...(this.opts.replicas !== undefined ? { DSTORE_REPLICAS: String(this.opts.replicas) } : {}),
      ...this.opts.env,
    };
    for (const w of this.workers) {
      this.workerProcs.push(
        this.child(`worker ${w.id}`, `worker-${w.id}`, [path.join(ROOT, 'dist/worker/main.js')], {
          ...base,
          DSTORE_WORKER_ID: w.id,
          DSTORE_DATA_DIR: w.dir,
        }),
      );
    }
    this.coordinator = this.child('coordinator', 'coordinator', [path.join(ROOT, 'dist/coordinator/main.js')], {
      ...base,
      DSTORE_HOST: '127.0.0.1',
      DSTORE_PORT: String(port),
    });
    this.url = `http://127.0.0.1:${port}`;
    await this.waitLive(keys, readOne(env, 'DSTORE_WORKER_TIMEOUT_MS'));
    for (const p of this.children()) p.supervise();
    return this.url;
  }

  /** The data dir exists and is writable, and no other `dstore up` runs on it (`<dataDir>/up.pid`). */
  private claimDataDir(): void {
    const dir = this.opts.dataDir;
    try {
      fs.mkdirSync(this.logDir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
      fs.accessSync(this.logDir, fs.constants.W_OK);
    } catch (e) {
      throw new UsageError(
        `--data-dir ${dir}: cannot create or write it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose another --data-dir`,
      );
    }
    const lock = path.join(dir, 'up.pid');
    try {
      const other = Number(fs.readFileSync(lock, 'utf8').trim());
      if (other && other !== process.pid && processAlive(other, 'up')) {
        throw new UsageError(
          `--data-dir ${dir}: another dstore up (pid ${other}) runs on it; stop it first, or choose another --data-dir`,
        );
      }
    } catch (e) {
      if (e instanceof UsageError) throw e;
    }
    try {
      fs.writeFileSync(lock, `${process.pid}\n`);
    } catch (e) {
      throw new UsageError(
        `--data-dir ${dir}: cannot write ${lock} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
    this.lockFile = lock;
  }

  private child(
    name: string,
    logName: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    command = process.execPath,
  ): SupervisedProcess {
    const p = new SupervisedProcess({
      name,
      command,
      args,
      env,
      logFile: path.join(this.logDir, `${logName}.log`),
      report: (l) => this.report(l),
      restart: this.opts.restart !== false,
    });
    p.start();
    return p;
  }

  private children(): SupervisedProcess[] {
    return [this.redisProc, this.coordinator, ...this.workerProcs].filter(
      (p): p is SupervisedProcess => p !== undefined,
    );
  }

  /**
   * Until the coordinator answers and every active worker started here is live; a child that dies meanwhile ends the
   * start.
   */
  private async waitLive(keys: Keys, workerTimeoutMs: number): Promise<void> {
    let died: { p: SupervisedProcess; e: ExitInfo } | undefined;
    for (const p of this.children()) p.onExit((e) => (died ??= { p, e }));
    const directory = new WorkerDirectory(this.cmd!, keys, workerTimeoutMs, 0);
    const wanted = this.workers.filter((w) => w.state !== 'draining').map((w) => w.id);
    const timeoutMs = this.opts.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let missing = wanted;
    let coordinatorUp = false;
    for (;;) {
      if (died) {
        const log = died.p.opts.logFile;
        throw new Error(`${died.p.name} exited during start-up (${died.e.why}); its log: ${shownPath(log)}`);
      }
      try {
        coordinatorUp ||= (await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2000) })).ok;
        const live = new Set((await directory.list()).filter((w) => w.live).map((w) => w.id));
        missing = wanted.filter((id) => !live.has(id));
        if (coordinatorUp && missing.length === 0) return;
      } catch {
        // not yet: the coordinator is starting, or Redis is loading
      }
      if (Date.now() > deadline) {
        const who = coordinatorUp
          ? `worker(s) ${missing.join(', ')} to be live`
          : `the coordinator to answer on ${this.url}`;
        throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${who}; logs in ${shownPath(this.logDir)}`);
      }
      await sleep(150);
    }
  }

  /** A redis-server of our own, on a free port with AOF on in `<dataDir>/redis`, supervised like the rest. */
  private async startRedis(): Promise<string> {
    const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
    if (found.error) {
      throw new Error(
        'redis-server not found: install it (apt-get install -y redis-server) or point REDIS_URL at a Redis',
      );
    }
    const dir = path.join(this.opts.dataDir, 'redis');
    fs.mkdirSync(dir, { recursive: true });
    await this.stopLeftoverRedis(dir);
    const port = await freePort();
    // AOF with fsync every second: the durability the docs promise for a local cluster.
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--pidfile',
      path.join(dir, 'redis-server.pid'),
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ];
    this.redisProc = this.child('redis-server', 'redis', args, process.env, 'redis-server');
    const url = `redis://127.0.0.1:${port}`;
    let died: ExitInfo | undefined;
    this.redisProc.onExit((e) => (died ??= e));
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined); // refused until redis-server listens; retried below
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (died)
          throw new Error(
            `redis-server exited during start-up (${died.why}); its log: ${shownPath(path.join(this.logDir, 'redis.log'))}`,
          );
        if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
        if ((await probe.ping().catch(() => '')) === 'PONG') break;
        if (Date.now() > deadline)
          throw new Error(
            `redis-server on port ${port} did not answer within 30 s; its log: ${path.join(this.logDir, 'redis.log')}`,
          );
        await sleep(100);
      }
    } finally {
      probe.disconnect();
    }
    this.say(`redis      ${url} (data in ${dir})`);
    return url;
  }

  /**
   * A redis-server an earlier `dstore up` on this data dir left running (that one was killed
   * with SIGKILL: its workers and coordinator stop by themselves, redis-server cannot):
   * stopped, so its data files have one writer.
   */
  private async stopLeftoverRedis(dir: string): Promise<void> {
    const pidFile = path.join(dir, 'redis-server.pid');
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!pid || !processAlive(pid, 'redis-server')) return;
    this.report(`redis-server (pid ${pid}) left running by an earlier dstore up on this data dir: stopping it`);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && processAlive(pid, 'redis-server'); i++) await sleep(100);
  }

  /**
   * The commands that add one more worker to this cluster, for people: its Redis, prefix and
   * a data dir of its own (a further one needs yet another DSTORE_DATA_DIR).
   */
  addWorkerCommand(): string {
    const taken = new Set([...this.workers, ...this.retired].map((w) => w.id));
    const id = freeWorkerId(this.opts.dataDir, taken);
    const shown = shownPath(path.join(this.opts.dataDir, id));
    // A URL with a password is not printed: the user's shell has it in REDIS_URL already.
    const url = new URL(this.redisUrl).password ? '"$REDIS_URL"' : shellWord(this.redisUrl);
    const vars = [`REDIS_URL=${url}`];
    const nodes = this.common?.redisClusterNodes;
    if (nodes) vars.push(`REDIS_CLUSTER_NODES=${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`);
    if (process.env.REDIS_TLS_CA_FILE) vars.push(`REDIS_TLS_CA_FILE=${shellWord(process.env.REDIS_TLS_CA_FILE)}`);
    vars.push(
      `DSTORE_PREFIX=${shellWord(this.common?.prefix ?? 'dstore')}`,
      `DSTORE_WORKER_ID=${shellWord(id)}`,
      `DSTORE_DATA_DIR=${shellWord(shown)}`,
    );
    return `${vars.join(' ')} npx dstore worker`;
  }

  /**
   * Stops the coordinator first (it finishes the requests in hand), then the workers, then
   * Redis if it was started here: SIGTERM, SIGKILL after `graceMs`. No restart once called.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await closeAll(this.cmd);
    await this.coordinator?.stop(graceMs);
    await Promise.all(this.workerProcs.map((p) => p.stop(graceMs)));
    await this.redisProc?.stop(graceMs);
    this.releaseLock();
  }

  /** Ends every child now (SIGKILL), for a second Ctrl-C. */
  kill(): void {
    this.stopped = true;
    for (const p of this.children()) p.kill();
    this.cmd?.disconnect();
    this.releaseLock();
  }

  private releaseLock(): void {
    try {
      if (this.lockFile && fs.readFileSync(this.lockFile, 'utf8').trim() === String(process.pid))
        fs.rmSync(this.lockFile);
    } catch {
      // already gone
    }
  }
}

/**
 * Stops `cluster` on SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed), then calls
 * `done` with the signal; a second signal kills every child at once. The children run in
 * sessions of their own, so these signals reach only this process, which stops them in order.
 */
export function stopOnSignals(
  cluster: LocalCluster,
  say: (line: string) => void,
  done: (signal: NodeJS.Signals) => void,
): void {
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) {
        say(`${signal} again: killing every process of the cluster now`);
        cluster.kill();
        process.exit(1);
      }
      stopping = true;
      say(`${signal}: stopping the cluster…`);
      void cluster.stop().then(() => done(signal));
    });
  }
}
