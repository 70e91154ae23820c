import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { projectRoot, spawnNode, tempDir, type ChildHandle } from '../support/processes';
import { clusterMode } from '../support/redis';
import { waitFor } from '../support/wait';

const CLI = () => path.join(projectRoot(), 'dist', 'cli', 'main.js');

/** `dstore up` runs its own redis-server: no REDIS_URL of the harness leaks in. */
const UP_ENV: Record<string, string> = {
  REDIS_URL: '',
  REDIS_CLUSTER_NODES: '',
  LOG_FORMAT: 'json',
  DSTORE_WORKER_TIMEOUT_MS: '2000',
  DSTORE_HEARTBEAT_MS: '250',
};

interface Up {
  child: ChildHandle;
  url: string;
  dir: string;
  /** Everything it printed so far (stdout and stderr, in order). */
  out(): string;
}

/** Every `dstore up` started, for the after hook. */
const ups: ChildHandle[] = [];

/** Runs `dstore up … --port 0 --data-dir dir` and waits for "dstore is up". */
async function up(dir: string, args: string[] = []): Promise<Up> {
  const child = spawnNode('up', 'dist/cli/main.js', ['up', '--port', '0', '--data-dir', dir, ...args], UP_ENV);
  ups.push(child);
  const out = () => fs.readFileSync(child.logFile, 'utf8');
  const url = await waitFor(
    async () => {
      const done = await Promise.race([child.exited, new Promise((r) => setTimeout(r, 0, undefined))]);
      if (done) throw new Error(`dstore up exited: ${JSON.stringify(done)}\n${out()}`);
      return /dstore is up: (http:\/\/\S+)/.exec(out())?.[1];
    },
    { what: 'dstore up to print its URL', timeoutMs: 90_000, intervalMs: 200 },
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${out()}`);
  });
  return { child, url, dir, out };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, url);
  return (await res.json()) as T;
}

type WorkerList = { workers: { id: string; live: boolean; status?: { pid: number } }[] };

/** Pids of the live workers, by id. */
async function workerPids(u: Up): Promise<Record<string, number>> {
  const { workers } = await getJson<WorkerList>(`${u.url}/workers`);
  return Object.fromEntries(workers.filter((w) => w.live).map((w) => [w.id, w.status!.pid]));
}

/** The coordinator's pid, from the last "listening" line of its log. */
function coordinatorPid(u: Up): number {
  const lines = fs
    .readFileSync(path.join(u.dir, 'logs', 'coordinator.log'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('coordinator listening on'));
  return (JSON.parse(lines[lines.length - 1]) as { pid: number }).pid;
}

function redisPid(u: Up): number {
  return Number(fs.readFileSync(path.join(u.dir, 'redis', 'redis-server.pid'), 'utf8').trim());
}

/** Whether `pid` runs (a zombie, which nobody reaped yet, does not). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function liveIds(u: Up): Promise<string[]> {
  return (await getJson<WorkerList>(`${u.url}/workers`)).workers.filter((w) => w.live).map((w) => w.id);
}

/** Stops `dstore up` with `signal` and checks it exits 0 leaving none of `pids` behind. */
async function stopUp(u: Up, signal: NodeJS.Signals, pids: number[]): Promise<void> {
  u.child.kill(signal);
  const exit = await u.child.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, u.out());
  assert.match(u.out(), new RegExp(`^${signal}: stopping the cluster…\nstopped$`, 'm'));
  for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} outlived dstore up\n${u.out()}`);
}

/** Runs the CLI to completion, stdout and stderr apart. */
function cli(
  args: string[],
  env: Record<string, string> = {},
): { code: number | null; stdout: string; stderr: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [CLI(), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...UP_ENV, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

describe('e2e: dstore up supervises a local cluster', function () {
  this.timeout(180_000);
  const leftovers: number[] = [];

  // `dstore up` starts its own single redis-server whatever the harness runs: under
  // test:cluster this suite would only repeat the single-Redis run (about 35 s of CI).
  before(function () {
    if (clusterMode()) this.skip();
  });

  after(async () => {
    // Only if a test failed half-way: nothing started here may survive the run.
    await Promise.all(ups.map((c) => c.stop()));
    for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });

  describe('on a new data dir', () => {
    let u: Up;
    let dir: string;

    before(async () => {
      dir = tempDir('up');
      u = await up(dir, ['--workers', '2']);
    });

    it('starts redis-server, a coordinator and the workers, and prints the exact command that adds a worker', async () => {
      assert.deepEqual(await liveIds(u), ['w1', 'w2']);
      assert.ok(
        fs.existsSync(path.join(dir, 'redis', 'appendonlydir')),
        'its own redis-server keeps an AOF in the data dir',
      );
      const line =
        /^ {11}(REDIS_URL=\S+ DSTORE_PREFIX=\S+ DSTORE_WORKER_ID=\S+ DSTORE_DATA_DIR=\S+) npx dstore worker$/m.exec(
          u.out(),
        );
      assert.ok(line, u.out());
      const env = Object.fromEntries(line[1].split(' ').map((kv) => kv.split('=') as [string, string]));
      assert.match(env.REDIS_URL, /^redis:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(env.REDIS_URL, 'redis://127.0.0.1:6379', 'the port up started Redis on');
      assert.equal(env.DSTORE_PREFIX, 'dstore');
      assert.equal(env.DSTORE_WORKER_ID, 'w3', 'the id its directory is named for');
      assert.equal(path.resolve(env.DSTORE_DATA_DIR), path.join(dir, 'w3'));
      // The command as printed (npx dstore = this CLI), run from the same directory.
      const extra = spawnNode('added-worker', CLI(), ['worker'], {
        ...env,
        LOG_FORMAT: 'json',
        DSTORE_HEARTBEAT_MS: '250',
      });
      leftovers.push(extra.pid);
      try {
        const ids = await waitFor(async () => ((await liveIds(u)).length === 3 ? liveIds(u) : undefined), {
          what: 'the added worker to be live',
          timeoutMs: 30_000,
        });
        assert.deepEqual([...ids].sort(), ['w1', 'w2', 'w3']);
      } finally {
        await extra.stop();
      }
    });

    it('restarts a worker that dies, one line saying who, why and when, backing off on a second death', async () => {
      const before = await workerPids(u);
      leftovers.push(...Object.values(before));
      process.kill(before.w1, 'SIGKILL');
      await waitFor(() => /^worker w1 exited \(signal SIGKILL\) at \d\d:\d\d:\d\d; restarting in 1 s$/m.test(u.out()), {
        what: 'the exit line',
        timeoutMs: 10_000,
      });
      const again = await waitFor(
        async () => {
          const p = await workerPids(u);
          return p.w1 && p.w1 !== before.w1 && (await liveIds(u)).includes('w1') ? p.w1 : undefined;
        },
        { what: 'w1 restarted and live', timeoutMs: 30_000 },
      );
      leftovers.push(again);
      process.kill(again, 'SIGKILL');
      await waitFor(() => /^worker w1 exited \(signal SIGKILL\) at \d\d:\d\d:\d\d; restarting in 2 s$/m.test(u.out()), {
        what: 'the second exit line, with a longer pause',
        timeoutMs: 10_000,
      });
      await waitFor(async () => (await liveIds(u)).includes('w1'), { what: 'w1 live again', timeoutMs: 30_000 });
      assert.equal(alive(before.w2), true, 'w2 was left alone');
    });

    it('restarts the coordinator that dies, on the same port', async () => {
      const pid = coordinatorPid(u);
      leftovers.push(pid);
      process.kill(pid, 'SIGKILL');
      await waitFor(
        () => /^coordinator exited \(signal SIGKILL\) at \d\d:\d\d:\d\d; restarting in 1 s$/m.test(u.out()),
        { what: 'the exit line', timeoutMs: 10_000 },
      );
      await waitFor(async () => coordinatorPid(u) !== pid && (await fetch(`${u.url}/healthz`)).ok, {
        what: 'the coordinator back on its port',
        timeoutMs: 30_000,
      });
    });

    it('stops every child on SIGHUP (the terminal closed): no orphan', async () => {
      // The worker restarted two tests ago may still be on its back-off on a loaded machine.
      const workers = await waitFor(
        async () => {
          const w = Object.values(await workerPids(u));
          return w.length === 2 ? w : undefined;
        },
        { what: 'both workers live', timeoutMs: 30_000 },
      );
      const pids = [...workers, coordinatorPid(u), redisPid(u)];
      leftovers.push(...pids);
      assert.equal(pids.length, 4);
      await stopUp(u, 'SIGHUP', pids);
      assert.equal(fs.existsSync(path.join(dir, 'up.pid')), false, 'the data dir is free again');
    });
  });

  describe('on a data dir a drained worker was retired from', () => {
    it('starts the active workers and a new one with a new id in place of the retired one', async () => {
      const dir = tempDir('up-drained');
      let u = await up(dir, ['--workers', '3']);
      assert.deepEqual(await liveIds(u), ['w1', 'w2', 'w3']);
      const pids = [...Object.values(await workerPids(u)), coordinatorPid(u), redisPid(u)];
      leftovers.push(...pids);
      const drain = cli(['worker', 'drain', 'w2', '--url', u.url, '--timeout', '60']);
      assert.equal(drain.code, 0, drain.stderr);
      assert.match(drain.stdout, /w2 drained and retired/);
      await stopUp(u, 'SIGINT', pids);

      u = await up(dir, ['--workers', '3']);
      assert.match(u.out(), /^workers {4}w1 w3 w4 \(new: w4\)$/m);
      assert.match(u.out(), /^ {11}w2 was drained and retired: not started \(its directory \S+ may be deleted\)$/m);
      assert.deepEqual(await liveIds(u), ['w1', 'w3', 'w4']);
      assert.equal(
        fs.readFileSync(path.join(dir, 'w4', 'worker-id'), 'utf8').trim(),
        'w4',
        'a fresh directory for the new id',
      );
      const again = [...Object.values(await workerPids(u)), coordinatorPid(u), redisPid(u)];
      leftovers.push(...again);
      await stopUp(u, 'SIGTERM', again);
    });
  });

  describe('with --no-restart, then killed with SIGKILL', () => {
    it('reports a death without restarting; its children stop by themselves and the next up stops the redis-server left behind', async () => {
      const dir = tempDir('up-norestart');
      const u = await up(dir, ['--workers', '1', '--no-restart']);
      const w1 = (await workerPids(u)).w1;
      const coordinator = coordinatorPid(u);
      const redis = redisPid(u);
      leftovers.push(w1, coordinator, redis);
      process.kill(w1, 'SIGKILL');
      await waitFor(
        () => /^worker w1 exited \(signal SIGKILL\) at \d\d:\d\d:\d\d; not restarted \(--no-restart\)$/m.test(u.out()),
        { what: 'the exit line', timeoutMs: 10_000 },
      );
      await waitFor(async () => (await liveIds(u)).length === 0, {
        what: 'w1 to be no longer live',
        timeoutMs: 10_000,
      });
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(await liveIds(u), [], 'w1 stays down');
      assert.doesNotMatch(u.out(), /restarting in/);

      u.child.kill('SIGKILL');
      await u.child.exited;
      await waitFor(() => !alive(coordinator), {
        what: 'the coordinator to stop once dstore up is gone',
        timeoutMs: 10_000,
      });
      assert.equal(alive(redis), true, 'redis-server cannot watch its parent');

      const next = await up(dir, ['--workers', '1']);
      assert.match(
        next.out(),
        new RegExp(
          `^redis-server \\(pid ${redis}\\) left running by an earlier dstore up on this data dir: stopping it$`,
          'm',
        ),
      );
      assert.equal(alive(redis), false);
      const pids = [...Object.values(await workerPids(next)), coordinatorPid(next), redisPid(next)];
      leftovers.push(...pids);
      await stopUp(next, 'SIGINT', pids);
    });
  });

  describe('with a flag it cannot use', () => {
    it('fails at once with one line naming --port when the port is taken', async () => {
      const srv = net.createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      const port = (srv.address() as net.AddressInfo).port;
      try {
        const dir = tempDir('up-port');
        const r = cli(['up', '--port', String(port), '--data-dir', dir]);
        assert.equal(r.code, 1);
        assert.equal(
          r.stderr,
          `dstore: --port ${port}: 127.0.0.1:${port} is already in use (another dstore up or coordinator?); choose another --port, or --port 0 for a free one\n`,
        );
        assert.ok(r.ms < 10_000, `${r.ms} ms`);
        assert.equal(fs.existsSync(path.join(dir, 'redis')), false, 'nothing was started');
      } finally {
        srv.close();
      }
    });

    it('fails at once with one line naming --data-dir when the directory cannot be made', () => {
      const file = path.join(tempDir('up-dir'), 'a-file');
      fs.writeFileSync(file, '');
      const r = cli(['up', '--port', '0', '--data-dir', path.join(file, 'data')]);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        `dstore: --data-dir ${path.join(file, 'data')}: cannot create or write it (ENOTDIR); choose another --data-dir\n`,
      );
    });

    it('fails at once naming --data-dir when another dstore up runs on it', async () => {
      const dir = tempDir('up-busy');
      const u = await up(dir, ['--workers', '1']);
      const pids = [...Object.values(await workerPids(u)), coordinatorPid(u), redisPid(u)];
      leftovers.push(...pids);
      try {
        const r = cli(['up', '--port', '0', '--data-dir', dir]);
        assert.equal(r.code, 1);
        assert.equal(
          r.stderr,
          `dstore: --data-dir ${dir}: another dstore up (pid ${u.child.pid}) runs on it; stop it first, or choose another --data-dir\n`,
        );
      } finally {
        await stopUp(u, 'SIGTERM', pids);
      }
    });
  });
});
