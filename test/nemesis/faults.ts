/**
 * The nemesis' cluster and its faults: a {@link TestCluster} on a Redis of its own (AOF,
 * so that it can be restarted), each fault of the schedule applied to real processes and
 * files, each heal, healing everything, and waiting until the cluster is quiet (every
 * worker live and caught up, nothing open, queued or under-replicated).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeKeys, OPS_GROUP, type Keys } from '../../common/keys';
import { fieldsFromArray } from '../../common/messages';
import { TestCluster } from '../support/cluster';
import { tempDir, type ChildHandle } from '../support/processes';
import type { TestRedis } from '../support/redis';
import { sleep } from '../support/wait';
import { send } from './requests';
import type { Fault } from './schedule';

/** Where a worker stands, as the nemesis left it. */
export type WorkerState = 'up' | 'killed' | 'stopped' | 'wiped' | 'retiring' | 'retired';

interface Slot {
  id: string;
  state: WorkerState;
  diskFull: boolean;
  /** While a file exists here the worker's SQLite cannot grow (DSTORE_FAILPOINT_DISK_FULL_FILE). */
  failFile: string;
}

/** Options of {@link NemesisCluster.start}. */
export interface NemesisClusterOptions {
  redis: TestRedis;
  prefix: string;
  workers: number;
  replicas: number;
  /** Settings of every process (short timeouts). */
  env: Record<string, string>;
}

/**
 * A Redis restart excuses a 500 for this long around it: a coordinator whose Redis
 * connection drops mid-request may answer one. No other fault excuses a 500 (a worker
 * down or a coordinator gone should give a 503 or a cut connection).
 */
export const REDIS_BLIP_MS = 3000;

/** The env var of the disk-full failpoint (worker/): while the named file exists, SQLite cannot grow. */
export const DISK_FULL_ENV = 'DSTORE_FAILPOINT_DISK_FULL_FILE';

/** The cluster a nemesis run drives. */
export class NemesisCluster {
  readonly keys: Keys;
  private readonly slots = new Map<string, Slot>();
  private readonly failDir = tempDir('nemesis-failpoints');
  private second: { child: ChildHandle; url: string } | undefined;
  private primaryDown = false;
  private secondDown = false;
  private redisRestartedAt = 0;
  /** Processes the nemesis killed: their exit is no crash. */
  private readonly killed = new Set<ChildHandle>();

  private constructor(
    readonly cluster: TestCluster,
    private readonly o: NemesisClusterOptions,
  ) {
    this.keys = makeKeys(o.prefix);
    // The Redis restart fault closes this client's connection; ioredis reconnects by itself.
    cluster.redis.on('error', () => undefined);
  }

  /** Starts workers w1..wN (each with its own disk-full file) and a coordinator, and waits for them. */
  static async start(o: NemesisClusterOptions): Promise<NemesisCluster> {
    const cluster = new TestCluster({
      redisUrl: o.redis.url,
      prefix: o.prefix,
      workers: o.workers,
      replicas: o.replicas,
      env: o.env,
    });
    const n = new NemesisCluster(cluster, o);
    try {
      for (let i = 1; i <= o.workers; i++) n.startWorker(`w${i}`);
      await cluster.startCoordinator();
      await cluster.waitLive([...n.slots.keys()]);
    } catch (e) {
      const crashed = n.crashed();
      await n.stop();
      throw new Error(
        `the cluster did not start: ${(e as Error).message}${crashed.length ? `\n${crashed.join('\n')}` : ''}`,
      );
    }
    return n;
  }

  private startWorker(id: string): void {
    const slot = this.slots.get(id) ?? {
      id,
      state: 'up',
      diskFull: false,
      failFile: path.join(this.failDir, `disk-full-${id}`),
    };
    slot.state = 'up';
    this.slots.set(id, slot);
    this.cluster.startWorker(id, undefined, { [DISK_FULL_ENV]: slot.failFile });
  }

  /** The URL of coordinator `via` (0 or 1), or of the other when it is not running; undefined when none is. */
  url(via: number): string | undefined {
    const urls = [
      this.primaryDown ? undefined : this.cluster.url,
      this.second && !this.secondDown ? this.second.url : undefined,
    ];
    return urls[via] ?? urls[1 - via];
  }

  /** Whether a 500 to a request sent at `since` (and answered now) may be blamed on a Redis restart. */
  excuses500(since: number): boolean {
    return this.redisRestartedAt >= since - REDIS_BLIP_MS;
  }

  /** Worker id → data dir of every worker process that runs (retired ones included). */
  workerDirs(): Map<string, string> {
    const out = new Map<string, string>();
    for (const s of this.slots.values())
      if (s.state !== 'killed' && s.state !== 'wiped') out.set(s.id, this.cluster.workers.get(s.id)!.dataDir);
    return out;
  }

  /** Workers that are expected to be live: neither impaired nor retired. */
  activeWorkers(): string[] {
    return [...this.slots.values()]
      .filter((s) => s.state === 'up' || s.state === 'retiring')
      .map((s) => s.id)
      .sort();
  }

  private slot(id: string): Slot | undefined {
    return this.slots.get(id);
  }

  private async killWorker(id: string): Promise<void> {
    const h = this.cluster.workers.get(id)!.child;
    this.killed.add(h);
    h.kill('SIGKILL');
    await h.exited;
  }

  /** An admin request to any running coordinator; status 0 when none answered. */
  private async admin(
    method: string,
    p: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const url = this.url(0);
    if (!url) return { status: 0, body: { error: 'no coordinator runs' } };
    const a = await send(url + p, method, body === undefined ? undefined : JSON.stringify(body));
    if (a.kind !== 'answered') return { status: 0, body: { error: a.error } };
    try {
      return { status: a.status, body: a.text ? (JSON.parse(a.text) as Record<string, unknown>) : {} };
    } catch {
      return { status: a.status, body: { text: a.text.slice(0, 200) } };
    }
  }

  /**
   * Applies one fault or heal; resolves with what it did. A fault that no longer fits what
   * the cluster is (its worker already retired, say) does nothing and says so.
   */
  async apply(f: Fault): Promise<string> {
    switch (f.op) {
      case 'kill':
      case 'stop':
      case 'wipe': {
        const s = this.slot(f.worker);
        if (s?.state !== 'up') return `skipped: ${f.worker} is ${s?.state ?? 'unknown'}`;
        if (f.op === 'stop') {
          this.cluster.workers.get(f.worker)!.child.kill('SIGSTOP');
          s.state = 'stopped';
          return 'SIGSTOP';
        }
        await this.killWorker(f.worker);
        s.state = f.op === 'kill' ? 'killed' : 'wiped';
        if (f.op === 'kill') return 'SIGKILL';
        const dir = this.cluster.workers.get(f.worker)!.dataDir;
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir, { recursive: true });
        return `SIGKILL, data dir ${path.basename(dir)} deleted`;
      }
      case 'disk-full': {
        const s = this.slot(f.worker);
        if (!s || s.state === 'retired' || s.state === 'retiring')
          return `skipped: ${f.worker} is ${s?.state ?? 'unknown'}`;
        fs.writeFileSync(s.failFile, 'full\n');
        s.diskFull = true;
        return `${DISK_FULL_ENV} file created`;
      }
      case 'restart': {
        const s = this.slot(f.worker);
        if (s?.state !== 'killed' && s?.state !== 'wiped') return `skipped: ${f.worker} is ${s?.state ?? 'unknown'}`;
        this.startWorker(f.worker);
        return 'started again under its id';
      }
      case 'cont': {
        const s = this.slot(f.worker);
        if (s?.state !== 'stopped') return `skipped: ${f.worker} is ${s?.state ?? 'unknown'}`;
        this.cluster.workers.get(f.worker)!.child.kill('SIGCONT');
        s.state = 'up';
        return 'SIGCONT';
      }
      case 'free-disk': {
        const s = this.slot(f.worker);
        if (!s?.diskFull) return `skipped: ${f.worker} has room`;
        fs.rmSync(s.failFile, { force: true });
        s.diskFull = false;
        return 'disk-full file removed';
      }
      case 'add-worker':
        if (this.slots.has(f.worker)) return `skipped: ${f.worker} exists`;
        this.startWorker(f.worker);
        return 'started with an empty data dir';
      case 'drain': {
        const s = this.slot(f.worker);
        if (s?.state !== 'up') return `skipped: ${f.worker} is ${s?.state ?? 'unknown'}`;
        const r = await this.admin('POST', `/workers/${f.worker}/drain`, {});
        if (r.status === 202) s.state = 'retiring';
        return `${r.status} ${JSON.stringify(r.body).slice(0, 160)}`;
      }
      case 'rebalance': {
        const r = await this.admin('POST', '/rebalance', {});
        const moves = Array.isArray(r.body.moves) ? r.body.moves.length : '?';
        return `${r.status}, ${moves} move(s)`;
      }
      case 'kill-coordinator': {
        const h =
          f.which === 0
            ? this.primaryDown
              ? undefined
              : this.cluster.coordinator
            : this.secondDown
              ? undefined
              : this.second?.child;
        if (!h) return `skipped: c${f.which} is not running`;
        this.killed.add(h);
        h.kill('SIGKILL');
        await h.exited;
        if (f.which === 0) this.primaryDown = true;
        else this.secondDown = true;
        return 'SIGKILL';
      }
      case 'restart-coordinator':
        return this.restartCoordinator(f.which);
      case 'second-coordinator':
        if (this.second && !this.secondDown) return 'skipped: c1 runs';
        return this.restartCoordinator(1);
      case 'redis-restart': {
        const t = (this.redisRestartedAt = Date.now());
        try {
          await this.o.redis.restart!();
        } finally {
          this.redisRestartedAt = Date.now();
        }
        return `SIGKILL + restart with AOF; PING after ${Date.now() - t} ms`;
      }
    }
  }

  private async restartCoordinator(which: number): Promise<string> {
    if (which === 0) {
      if (!this.primaryDown) return 'skipped: c0 runs';
      await this.cluster.startCoordinator();
      this.primaryDown = false;
      return `started on ${this.cluster.url}`;
    }
    if (this.second && !this.secondDown) return 'skipped: c1 runs';
    this.second = await this.cluster.spawnCoordinator('coordinator2');
    this.secondDown = false;
    return `started on ${this.second.url}`;
  }

  /** Undoes every fault in force: SIGCONT, restart, free the disk, restart coordinators. */
  async healAll(): Promise<string[]> {
    const done: string[] = [];
    for (const s of this.slots.values()) {
      if (s.diskFull) done.push(`free-disk ${s.id}: ${await this.apply({ op: 'free-disk', worker: s.id })}`);
      if (s.state === 'stopped') done.push(`cont ${s.id}: ${await this.apply({ op: 'cont', worker: s.id })}`);
      if (s.state === 'killed' || s.state === 'wiped')
        done.push(`restart ${s.id}: ${await this.apply({ op: 'restart', worker: s.id })}`);
    }
    if (this.primaryDown) done.push(`restart c0: ${await this.apply({ op: 'restart-coordinator', which: 0 })}`);
    if (this.secondDown) done.push(`restart c1: ${await this.apply({ op: 'restart-coordinator', which: 1 })}`);
    return done;
  }

  /** Processes that exited although the nemesis did not kill them, with the end of their log. */
  crashed(): string[] {
    const handles: ChildHandle[] = [
      ...(this.primaryDown ? [] : [this.cluster.coordinator]),
      ...(this.second && !this.secondDown ? [this.second.child] : []),
    ];
    for (const s of this.slots.values())
      if (s.state !== 'killed' && s.state !== 'wiped') handles.push(this.cluster.workers.get(s.id)!.child);
    return handles
      .filter((h) => !this.killed.has(h) && (h.child.exitCode !== null || h.child.signalCode !== null))
      .map(
        (h) =>
          `${h.name} (pid ${h.pid}) exited by itself (${h.child.exitCode ?? h.child.signalCode}); its log ends:\n${h.tail(12)}`,
      );
  }

  /**
   * What still keeps the cluster from being quiet, [] once it is: drains not finished, the
   * live workers not exactly the active ones, a worker's ops stream not consumed, a POST
   * open, an UPDATE/DELETE in flight, a move pending, a chunk under-replicated.
   */
  async unsettled(): Promise<string[]> {
    const out: string[] = [];
    for (const s of this.slots.values()) {
      if (s.state !== 'retiring') continue;
      const r = await this.admin('GET', `/workers/${s.id}/drain`);
      if (r.body.state === 'retired') s.state = 'retired';
      else if (r.body.state === 'active') s.state = 'up';
      else out.push(`drain of ${s.id}: ${r.body.state} (${r.body.chunks} chunks left)`);
    }
    const st = await this.admin('GET', '/status');
    const live = ((st.body.workers ?? []) as { id: string; live: boolean }[])
      .filter((w) => w.live)
      .map((w) => w.id)
      .sort()
      .join(',');
    const want = this.activeWorkers().join(',');
    if (live !== want) out.push(`live workers ${live || 'none'}, expected ${want}`);
    const r = this.cluster.redis;
    const [open, inflight, rebalance, under] = await Promise.all([
      r.hlen(this.keys.openPosts),
      // An entry of a coordinator killed mid-XADD stays until a chunk copy sweeps it (30 s);
      // only recent ones can still be on their way to a stream.
      r.zcount(this.keys.mutationsInflight, Date.now() - 10_000, '+inf'),
      // The API, not the raw set: it forgets planned moves whose job is gone.
      this.admin('GET', '/rebalance'),
      this.underReplicated(),
    ]);
    const moves = rebalance.status === 200 ? Number(rebalance.body.pending) : NaN;
    if (open > 0) out.push(`${open} POST(s) open`);
    if (inflight > 0) out.push(`${inflight} UPDATE/DELETE(s) in flight`);
    if (!(moves === 0))
      out.push(
        Number.isNaN(moves)
          ? `GET /rebalance: ${rebalance.status} ${JSON.stringify(rebalance.body).slice(0, 120)}`
          : `${moves} move(s) pending`,
      );
    if (under.placed > 0) out.push(`${under.placed} chunk(s) under-replicated`);
    // A worker restarted on a new shard (a wiped directory) holds nothing until the sweep has
    // recorded its new shard and marked its chunks for repair: not quiet before that.
    const [status, shards] = await Promise.all([r.hgetall(this.keys.workerStatus), r.hgetall(this.keys.workerShards)]);
    for (const [id, raw] of Object.entries(status)) {
      const { shard: serving, pid } = JSON.parse(raw) as { shard?: string; pid?: number };
      // A worker restarted a moment ago still shows its killed process's last heartbeat.
      const child = this.slots.get(id)?.state === 'up' ? this.cluster.workers.get(id)?.child : undefined;
      if (child && pid !== child.pid) out.push(`${id}: its restarted process has not heartbeated yet`);
      const recorded = shards[id] ? (JSON.parse(shards[id]) as { shard?: string }).shard : undefined;
      if (serving && serving !== recorded) out.push(`${id}: its new shard not yet recorded by the sweep`);
    }
    for (const id of this.workerDirs().keys()) {
      const lag = await this.streamLag(id);
      if (lag) out.push(`${id}: ${lag}`);
    }
    return out;
  }

  /**
   * Entries of `{<p>}:chunks:under-replicated`: `placed` those of chunks still placed, `gone`
   * those of chunks that no longer exist (reported, not waited for: repair removes them when
   * it looks at them, and an abort removes those of its POST).
   */
  async underReplicated(): Promise<{ placed: number; gone: number }> {
    const r = this.cluster.redis;
    const ids = await r.zrange(this.keys.underReplicated, 0, -1);
    let placed = 0;
    for (const id of ids) if (await r.hexists(this.keys.chunks, id)) placed++;
    return { placed, gone: ids.length - placed };
  }

  /** Why a worker's ops stream is not fully consumed, or '' when it is. */
  private async streamLag(id: string): Promise<string> {
    const key = this.keys.workerOps(id);
    const r = this.cluster.redis;
    if ((await r.exists(key)) === 0) return '';
    const info = fieldsFromArray(
      ((await r.xinfo('STREAM', key)) as unknown[]).map((x) => (Array.isArray(x) ? '' : String(x))),
    );
    const groups = ((await r.xinfo('GROUPS', key)) as unknown[][]).map((g) => fieldsFromArray(g.map(String)));
    const g = groups.find((x) => x.name === OPS_GROUP);
    if (!g) return 'no consumer group yet';
    if (Number(g.pending) > 0) return `${g.pending} entries delivered, not acked`;
    if (g['last-delivered-id'] !== info['last-generated-id'])
      return `not read up to ${info['last-generated-id']} (at ${g['last-delivered-id']})`;
    return '';
  }

  /**
   * Waits until {@link unsettled} is empty. `unmet` is what was still unsettled at the
   * deadline ([] on success); `waited` what kept it longest from settling, for the log.
   */
  async settle(timeoutMs: number): Promise<{ unmet: string[]; ms: number; waited: string }> {
    const t = Date.now();
    const deadline = t + timeoutMs;
    let last: string[] = [];
    const seen = new Map<string, number>();
    while (Date.now() < deadline) {
      try {
        last = await this.unsettled();
      } catch (e) {
        last = [`status not readable: ${(e as Error).message}`];
      }
      for (const what of last) {
        const key = what.replace(/\d+/g, 'N');
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      if (last.length === 0) break;
      await sleep(250);
    }
    const waited = [...seen].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
    return { unmet: last, ms: Date.now() - t, waited };
  }

  /** Dead-lettered stream entries so far. */
  async deadLetters(): Promise<number> {
    return this.cluster.redis.xlen(this.keys.dead).catch(() => -1);
  }

  /** Stops every process (stopped workers are resumed first) and removes the failpoint files. */
  async stop(): Promise<void> {
    await this.cluster.stop();
    fs.rmSync(this.failDir, { recursive: true, force: true });
  }
}
