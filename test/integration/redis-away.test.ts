import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import Redis from 'ioredis';
import { makeKeys } from '../../common/keys';
import { maskRedisUrl, retryDelay } from '../../common/redis';
import { spawnNode, startWorkerProcess, tempDir, type ChildHandle } from '../support/processes';
import { freePort, uniquePrefix } from '../support/redis';
import { waitFor } from '../support/wait';

interface LogLine {
  level: number;
  time: number;
  component?: string;
  msg: string;
  redis?: string;
  attempt?: number;
  retryInMs?: number;
  workerId?: string;
  coordinatorId?: string;
}

function lines(child: ChildHandle): LogLine[] {
  return fs
    .readFileSync(child.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The warn lines of the process's Redis connections. */
const retries = (child: ChildHandle) => lines(child).filter((l) => l.level === 40 && l.component === 'redis');

describe('maskRedisUrl and retryDelay', () => {
  it('hide the password and nothing else', () => {
    assert.equal(maskRedisUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
    assert.equal(maskRedisUrl('redis://app:s3cret@redis.internal:6380/2'), 'redis://app:***@redis.internal:6380/2');
    assert.equal(maskRedisUrl('rediss://:s3cret@host:6379'), 'rediss://:***@host:6379');
  });

  it('back off from 100 ms to a 2 s cap', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 50].map(retryDelay), [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
  });
});

describe('a worker and a coordinator that cannot reach Redis', function () {
  this.timeout(60_000);
  const PASSWORD = `pw-${Date.now().toString(36)}`;
  let port: number;
  let url: string;
  let prefix: string;
  let worker: ChildHandle;
  let coordinator: ChildHandle;
  let redis: ChildProcess | undefined;
  let spawnedAt: number;

  before(async () => {
    port = await freePort();
    url = `redis://default:${PASSWORD}@127.0.0.1:${port}`;
    prefix = uniquePrefix();
    spawnedAt = Date.now();
    worker = startWorkerProcess({
      redisUrl: url,
      prefix,
      id: 'w1',
      dataDir: tempDir('away-w1'),
      env: { LOG_LEVEL: 'info' },
    });
    coordinator = spawnNode('coordinator', 'dist/coordinator/main.js', [], {
      REDIS_URL: url,
      DSTORE_PREFIX: prefix,
      DSTORE_PORT: '0',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
    });
  });

  after(async () => {
    await Promise.all([worker?.stop(), coordinator?.stop()]);
    if (redis && redis.exitCode === null && redis.signalCode === null) {
      const gone = new Promise((r) => redis!.once('exit', r));
      redis.kill('SIGTERM');
      await gone;
    }
  });

  it('log one warn line per attempt, the first within a second, naming the URL without its password and the next delay', async () => {
    const masked = `redis://default:***@127.0.0.1:${port}`;
    for (const child of [worker, coordinator]) {
      const first = await waitFor(() => retries(child)[0], {
        what: `${child.name}'s first retry line`,
        timeoutMs: 10_000,
      });
      assert.equal(first.redis, masked);
      assert.deepEqual([first.attempt, first.retryInMs], [1, 100]);
      assert.equal(
        first.msg,
        `cannot reach redis at ${masked} (connect ECONNREFUSED 127.0.0.1:${port}): attempt 1, retrying in 100 ms`,
      );
      if (child === worker) assert.equal(first.workerId, 'w1', 'the line carries the worker id');
      else assert.match(first.coordinatorId ?? '', /^c-/, 'the line carries the coordinator id');
    }
    // "worker starting" used to be the last line: the first refused attempt now follows within a second.
    const starting = lines(worker).find((l) => l.msg === 'worker starting')!;
    assert.ok(
      retries(worker)[0].time - starting.time < 1000,
      `${retries(worker)[0].time - starting.time} ms after "worker starting"`,
    );
    // From the spawn, Node's start-up is most of it (generous for a loaded 2-core machine).
    assert.ok(
      retries(coordinator)[0].time - spawnedAt < 5000,
      `${retries(coordinator)[0].time - spawnedAt} ms after the spawn`,
    );
    // Three connections, one line per attempt: 1, 2, 3, … each once, with its own delay.
    const seen = await waitFor(() => (retries(worker).length >= 5 ? retries(worker) : undefined), {
      what: 'five retry lines of the worker',
      timeoutMs: 10_000,
    });
    assert.deepEqual(
      seen.slice(0, 5).map((l) => [l.attempt, l.retryInMs]),
      [
        [1, 100],
        [2, 200],
        [3, 400],
        [4, 800],
        [5, 1600],
      ],
    );
    for (const child of [worker, coordinator])
      assert.ok(!fs.readFileSync(child.logFile, 'utf8').includes(PASSWORD), `${child.name} never logs the password`);
  });

  it('say so once Redis answers, and go on', async () => {
    const dir = tempDir('away-redis');
    redis = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--requirepass',
        PASSWORD,
      ],
      { stdio: 'ignore' },
    );
    for (const child of [worker, coordinator]) {
      const back = await waitFor(() => lines(child).find((l) => l.component === 'redis' && l.level === 30), {
        what: `${child.name}'s "answers again" line`,
        timeoutMs: 15_000,
      });
      assert.match(
        back.msg,
        new RegExp(
          `^redis at redis://default:\\*\\*\\*@127\\.0\\.0\\.1:${port} answers again after \\d+ attempt\\(s\\)$`,
        ),
      );
    }
    const check = new Redis(url);
    try {
      await waitFor(async () => (await check.zscore(makeKeys(prefix).workers, 'w1')) !== null, {
        what: 'the worker to heartbeat',
        timeoutMs: 15_000,
      });
    } finally {
      check.disconnect();
    }
    await waitFor(() => lines(coordinator).some((l) => l.msg.startsWith('coordinator listening on')), {
      what: 'the coordinator to listen',
      timeoutMs: 15_000,
    });
  });
});
