import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Redis from 'ioredis';

/** Options of {@link LocalCluster}. */
export interface LocalClusterOptions {
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
  /** Progress lines for people. */
  say?: (line: string) => void;
}

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

async function waitUntil(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
}

/**
 * A whole dstore on one machine: Redis (REDIS_URL, or a `redis-server` started here with
 * AOF on), one coordinator and N workers as child processes, logs under
 * `<dataDir>/logs`. `stop()` ends every child it started, Redis last.
 */
export class LocalCluster {
  url = '';
  redisUrl = '';
  private readonly children: { name: string; proc: ChildProcess }[] = [];
  private redisProc?: ChildProcess;
  private stopped = false;

  constructor(readonly opts: LocalClusterOptions) {}

  private say(line: string): void {
    this.opts.say?.(line);
  }

  /** Starts everything; resolves with the coordinator URL once every worker is live. */
  async start(): Promise<string> {
    fs.mkdirSync(path.join(this.opts.dataDir, 'logs'), { recursive: true });
    this.redisUrl = this.opts.redisUrl ?? (await this.startRedis());
    const port = this.opts.port === 0 ? await freePort() : this.opts.port;
    const base = {
      REDIS_URL: this.redisUrl,
      LOG_FORMAT: 'json',
      ...(this.opts.replicas !== undefined ? { DSTORE_REPLICAS: String(this.opts.replicas) } : {}),
      ...this.opts.env,
    };
    for (let i = 1; i <= this.opts.workers; i++) {
      const id = `w${i}`;
      this.spawnChild(id, 'dist/worker/main.js', { ...base, DSTORE_WORKER_ID: id, DSTORE_DATA_DIR: path.join(this.opts.dataDir, id) });
    }
    this.spawnChild('coordinator', 'dist/coordinator/main.js', { ...base, DSTORE_HOST: '127.0.0.1', DSTORE_PORT: String(port) });
    this.url = `http://127.0.0.1:${port}`;
    await waitUntil(`${this.opts.workers} live workers behind ${this.url} (logs: ${path.join(this.opts.dataDir, 'logs')})`, 30_000, async () => {
      this.throwIfChildDied();
      const res = await fetch(`${this.url}/healthz`);
      return res.ok && ((await res.json()) as { liveWorkers: number }).liveWorkers >= this.opts.workers;
    });
    return this.url;
  }

  private throwIfChildDied(): void {
    for (const c of this.children) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) {
        const log = path.join(this.opts.dataDir, 'logs', `${c.name}.log`);
        const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').slice(-3).join('\n') : '';
        throw new Error(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}); see ${log}\n${tail}`);
      }
    }
  }

  private spawnChild(name: string, script: string, env: Record<string, string>): void {
    const out = fs.openSync(path.join(this.opts.dataDir, 'logs', `${name}.log`), 'a');
    const proc = spawn(process.execPath, [path.join(ROOT, script)], { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.children.push({ name, proc });
  }

  private async startRedis(): Promise<string> {
    const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
    if (found.error) {
      throw new Error('redis-server not found: install it (apt-get install -y redis-server) or point REDIS_URL at a Redis');
    }
    const port = await freePort();
    const dir = path.join(this.opts.dataDir, 'redis');
    fs.mkdirSync(dir, { recursive: true });
    const out = fs.openSync(path.join(this.opts.dataDir, 'logs', 'redis.log'), 'a');
    // AOF with fsync every second: the durability the docs promise for a local cluster.
    this.redisProc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'],
      { stdio: ['ignore', out, out] },
    );
    fs.closeSync(out);
    const url = `redis://127.0.0.1:${port}`;
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined); // refused until redis-server listens; waitUntil retries
    try {
      await waitUntil(`redis-server on port ${port}`, 10_000, async () => {
        if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
        return (await probe.ping()) === 'PONG';
      });
    } finally {
      probe.disconnect();
    }
    this.say(`redis      ${url} (data in ${dir})`);
    return url;
  }

  /** Stops the coordinator and workers (SIGTERM, then SIGKILL after 10 s), then Redis. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const ends = [...this.children].reverse().map(({ proc }) => stopProcess(proc, 10_000));
    await Promise.all(ends);
    if (this.redisProc) await stopProcess(this.redisProc, 5000);
  }
}

function stopProcess(proc: ChildProcess, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}
