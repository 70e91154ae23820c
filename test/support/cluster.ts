import type Redis from 'ioredis';
import { makeKeys, type Keys } from '../../common/keys';
import { clusterNodesOf, dropPrefix, freePort, sharedRedis, testClient, uniquePrefix, type TestRedis } from './redis';
import { spawnNode, startWorkerProcess, tempDir, type ChildHandle } from './processes';
import { waitFor } from './wait';

/** One worker process of a test cluster. */
export interface TestWorker {
  id: string;
  dataDir: string;
  child: ChildHandle;
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** The test Redis; when it is a cluster (see startRedisCluster) every process uses REDIS_CLUSTER_NODES. */
  redisUrl: string;
  prefix: string;
  workers: number;
  replicas?: number;
  /** Extra env for the coordinator and the workers (short timeouts for fault tests). */
  env?: Record<string, string>;
  /** Secret that {@link TestCluster.api} sends as `Authorization: Bearer` (with DSTORE_TOKENS in `env`). */
  token?: string;
}

/** An HTTP answer: status and parsed body (JSON, or NDJSON lines as an array). */
export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
}

/**
 * A real cluster for e2e tests: one coordinator and N workers as child processes on the
 * test's Redis and key prefix, plus a small HTTP client for its API.
 */
export class TestCluster {
  url = '';
  coordinator!: ChildHandle;
  readonly workers = new Map<string, TestWorker>();
  private readonly extra: ChildHandle[] = [];
  readonly redis: Redis;

  constructor(readonly opts: ClusterOptions) {
    this.redis = testClient(opts.redisUrl, `${opts.prefix}:test-cluster`);
  }

  private env(): Record<string, string> {
    const nodes = clusterNodesOf(this.opts.redisUrl);
    return {
      ...(nodes ? { REDIS_CLUSTER_NODES: nodes } : {}),
      DSTORE_REPLICAS: String(this.opts.replicas ?? 2),
      DSTORE_HEARTBEAT_MS: '200',
      DSTORE_WORKER_TIMEOUT_MS: '1500',
      DSTORE_FETCH_TIMEOUT_MS: '2000',
      LOG_LEVEL: 'info',
      ...this.opts.env,
    };
  }

  async start(): Promise<this> {
    for (let i = 1; i <= this.opts.workers; i++) this.startWorker(`w${i}`);
    await this.startCoordinator();
    await this.waitLive([...this.workers.keys()]);
    return this;
  }

  /** Starts worker `id` (again) on `dataDir` (default: its previous one, or a new temp dir), with extra `env`. */
  startWorker(
    id: string,
    dataDir = this.workers.get(id)?.dataDir ?? tempDir(`e2e-${id}`),
    env: Record<string, string> = {},
  ): TestWorker {
    const child = startWorkerProcess({
      redisUrl: this.opts.redisUrl,
      prefix: this.opts.prefix,
      id,
      dataDir,
      env: { ...this.env(), LOG_LEVEL: 'info', ...env },
    });
    const w = { id, dataDir, child };
    this.workers.set(id, w);
    return w;
  }

  /** Starts the cluster's (replacement) coordinator on a new port; `url` then points at it. */
  async startCoordinator(): Promise<void> {
    const { child, url } = await this.spawnCoordinator('coordinator');
    this.coordinator = child;
    this.url = url;
  }

  /**
   * Starts one more coordinator with the cluster's settings (and `env`), waits for /healthz, and
   * stops it with the cluster. Used for tests that run several coordinators.
   */
  async spawnCoordinator(name: string, env: Record<string, string> = {}): Promise<{ child: ChildHandle; url: string }> {
    const port = await freePort();
    const child = spawnNode(name, 'dist/coordinator/main.js', [], {
      REDIS_URL: this.opts.redisUrl,
      DSTORE_PREFIX: this.opts.prefix,
      DSTORE_PORT: String(port),
      LOG_FORMAT: 'json',
      ...this.env(),
      ...env,
    });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        if (child.child.exitCode !== null) throw new Error(`${name} exited:\n${child.tail(20)}`);
        return (await fetch(`${url}/healthz`).catch(() => undefined))?.ok;
      },
      { what: `${name} to answer /healthz`, timeoutMs: 20_000 },
    );
    if (name !== 'coordinator') this.extra.push(child);
    return { child, url };
  }

  /**
   * Waits until the coordinator counts `n` live workers or, given ids, until exactly those
   * workers are live. Prefer ids after a worker joins or dies: a count can be met by the
   * wrong set for a moment (one worker's heartbeat late while the dead one's is still fresh).
   */
  async waitLive(want: number | string[]): Promise<void> {
    if (typeof want === 'number') {
      await waitFor(
        async () =>
          (await this.api<{ liveWorkers: number }>('GET', '/healthz')).body.liveWorkers === want ? true : undefined,
        {
          what: `${want} live workers`,
          timeoutMs: 30_000,
        },
      );
      return;
    }
    const expected = [...want].sort().join(',');
    await waitFor(
      async () => {
        const r = await this.api<{ workers: { id: string; live: boolean }[] }>('GET', '/status');
        return r.status === 200 &&
          r.body.workers
            .filter((w) => w.live)
            .map((w) => w.id)
            .sort()
            .join(',') === expected
          ? true
          : undefined;
      },
      { what: `exactly workers ${expected} live`, timeoutMs: 30_000 },
    );
  }

  async api<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<ApiAnswer<T>> {
    const init: RequestInit = {
      method,
      headers: this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {},
    };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = contentType;
    }
    const res = await fetch(this.url + path, init);
    const text = await res.text();
    const ct = res.headers.get('content-type') ?? '';
    const parsed = ct.includes('ndjson')
      ? text
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      : text
        ? JSON.parse(text)
        : undefined;
    return { status: res.status, body: parsed as T };
  }

  /**
   * Runs a query; returns the NDJSON lines but a last `{"_next": cursor}` (the cursor of a page
   * a limit cut short: test/e2e/cursors.test.ts follows them). Throws with the body on a non-200.
   */
  async query<T = Record<string, unknown>>(table: string, q: Record<string, unknown> = {}): Promise<T[]> {
    const r = await this.api<T[]>('POST', `/tables/${table}/query`, q);
    if (r.status !== 200) throw new Error(`query failed: ${r.status} ${JSON.stringify(r.body)}`);
    const last = r.body[r.body.length - 1] as Record<string, unknown> | undefined;
    if (last && Object.keys(last).length === 1 && typeof last._next === 'string') return r.body.slice(0, -1);
    return r.body;
  }

  /** Stops every process of the cluster (resuming workers a test left SIGSTOPped first) and its Redis client. */
  async stop(): Promise<void> {
    for (const w of this.workers.values()) w.child.kill('SIGCONT');
    await Promise.all([
      this.coordinator?.stop(),
      ...this.extra.map((c) => c.stop()),
      ...[...this.workers.values()].map((w) => w.child.stop()),
    ]);
    await this.redis.quit();
  }
}

/** Starts a cluster and waits for every worker to be live. */
export function startCluster(opts: ClusterOptions): Promise<TestCluster> {
  return new TestCluster(opts).start();
}

/** Options of {@link clusterSuite}: those of {@link startCluster} but the Redis and the prefix, which it provides. */
export type ClusterSuiteOptions = Omit<ClusterOptions, 'redisUrl' | 'prefix'>;

/** What {@link clusterSuite} provides once its `before` hook has run; reading a field earlier throws. */
export interface ClusterSuite {
  /** The Redis shared by the whole run (a three-master cluster under DSTORE_TEST_REDIS=cluster). */
  readonly redis: TestRedis;
  /** The suite's own key prefix. */
  readonly prefix: string;
  /** The suite's cluster: one coordinator and workers w1..wN, all live once `before` is done. */
  readonly cluster: TestCluster;
  /** `makeKeys(prefix)`: the suite's Redis keys. */
  readonly keys: Keys;
}

/**
 * Registers the mocha hooks of a suite that runs against one cluster of its own, and returns
 * accessors for what they set up. The `before` hook takes the shared Redis and a fresh
 * prefix and starts the cluster, waiting until workers w1..w`workers` are live; the `after`
 * hook stops the cluster and deletes the prefix's keys; it also cleans up after a `before`
 * that failed part way, and does nothing when an earlier hook skipped the suite.
 *
 * Call it at the top of a `describe`, before the suite's own hooks: mocha runs hooks in the
 * order they are registered, so the suite's own `before` (tables, loads, more coordinators)
 * runs with the cluster up, and its own `after` runs once the cluster is stopped.
 *
 * @example
 * ```ts
 * describe('e2e: …', function () {
 *   const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '500' } });
 *   before(async () => void (await e2e.cluster.api('PUT', '/tables/t')));
 *   it('…', async () => assert.equal(await e2e.cluster.redis.scard(e2e.keys.tableChunks('t')), 0));
 * });
 * ```
 */
export function clusterSuite(opts: ClusterSuiteOptions): ClusterSuite {
  let redis: TestRedis | undefined;
  let prefix: string | undefined;
  let cluster: TestCluster | undefined;
  before(async () => {
    redis = await sharedRedis();
    prefix = uniquePrefix();
    // Assigned before start(): `after` stops what a failed start left running.
    cluster = new TestCluster({ ...opts, redisUrl: redis.url, prefix });
    await cluster.start();
  });
  after(async () => {
    await cluster?.stop();
    if (redis && prefix) await dropPrefix(redis.url, prefix);
  });
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined)
      throw new Error(`clusterSuite: ${what} is read before the suite's before hook has set it up`);
    return value;
  };
  return {
    get redis() {
      return ready(redis, 'redis');
    },
    get prefix() {
      return ready(prefix, 'prefix');
    },
    get cluster() {
      return ready(cluster, 'cluster');
    },
    get keys() {
      return makeKeys(ready(prefix, 'prefix'));
    },
  };
}
