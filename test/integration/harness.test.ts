import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Redis from 'ioredis';
import {
  dropPrefix,
  sharedRedis,
  spawnNode,
  startRedis,
  tempDir,
  uniquePrefix,
  waitFor,
  type TestRedis,
} from '../support';

/** A connection that fails fast instead of reconnecting, so a broken harness fails the test. */
function connect(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('test harness', () => {
  describe('redis', () => {
    let redis: TestRedis;
    let conn: Redis;
    before(async () => {
      redis = await sharedRedis();
      conn = connect(redis.url);
    });
    after(async () => {
      await conn?.quit();
    });

    it('answers PING and is not the default port unless REDIS_URL says so', async () => {
      assert.equal(await conn.ping(), 'PONG');
      if (process.env.REDIS_URL) {
        assert.equal(redis.kind, 'env');
        assert.equal(redis.url, process.env.REDIS_URL);
      } else {
        assert.notEqual(redis.kind, 'env');
        const port = new URL(redis.url).port || '6379';
        assert.notEqual(port, '6379', `harness Redis ${redis.url} must not be on 6379`);
      }
      assert.equal(await sharedRedis(), redis, 'sharedRedis() must return one instance per run');
    });

    it('uniquePrefix gives distinct [a-z0-9] values starting with t', () => {
      const seen = new Set<string>();
      for (let i = 0; i < 2000; i++) {
        const p = uniquePrefix();
        assert.match(p, /^t[a-z0-9]+$/);
        seen.add(p);
      }
      assert.equal(seen.size, 2000);
    });

    it('dropPrefix removes only keys under its prefix', async () => {
      const a = uniquePrefix();
      const b = uniquePrefix();
      // More keys than one SCAN page, so batching is exercised.
      const n = 2500;
      const pipe = conn.pipeline();
      for (let i = 0; i < n; i++) pipe.set(`${a}:k:${i}`, 'x');
      for (let i = 0; i < 10; i++) pipe.set(`${b}:k:${i}`, 'y');
      pipe.hset(`${a}:h`, 'f', 'v');
      // Share `a` as a string prefix without being under `${a}:`.
      pipe.set(a, 'bare');
      pipe.set(`${a}x:k`, 'sibling');
      await pipe.exec();
      try {
        await dropPrefix(redis.url, a);
        const leftA = await conn.keys(`${a}:*`);
        assert.deepEqual(leftA, []);
        assert.equal((await conn.keys(`${b}:*`)).length, 10);
        assert.equal(await conn.get(a), 'bare');
        assert.equal(await conn.get(`${a}x:k`), 'sibling');
        await dropPrefix(redis.url, b);
        assert.deepEqual(await conn.keys(`${b}:*`), []);
      } finally {
        await conn.del(a, `${a}x:k`);
        await dropPrefix(redis.url, a);
        await dropPrefix(redis.url, b);
      }
    });

    it('dropPrefix treats glob characters in the prefix literally', async () => {
      const a = uniquePrefix();
      await conn.set(`${a}:k`, 'x');
      try {
        await dropPrefix(redis.url, `${a.slice(0, 3)}*`);
        assert.equal(await conn.get(`${a}:k`), 'x');
      } finally {
        await dropPrefix(redis.url, a);
      }
    });
  });

  describe('restart', () => {
    let redis: TestRedis | undefined;
    let conn: Redis | undefined;
    afterEach(async () => {
      conn?.disconnect();
      await redis?.stop();
    });

    it('keeps data written before a crash when appendonly is on', async () => {
      redis = await startRedis({ appendonly: true });
      assert.notEqual(redis.kind, 'env', 'an appendonly Redis is always started by the harness');
      assert.ok(redis.restart, `${redis.kind} Redis must support restart()`);
      conn = connect(redis.url);
      const runId = async (c: Redis) => /run_id:(\w+)/.exec(await c.info('server'))?.[1];
      const before = await runId(conn);
      await conn.set('k:1', 'one');
      await conn.rpush('k:list', 'a', 'b', 'c');
      conn.disconnect();

      await redis.restart();

      conn = connect(redis.url);
      assert.notEqual(await runId(conn), before, 'the server must be a new process');
      assert.equal(await conn.get('k:1'), 'one');
      assert.deepEqual(await conn.lrange('k:list', 0, -1), ['a', 'b', 'c']);
      conn.disconnect();
      conn = undefined;

      await redis.stop();
      const url = redis.url;
      redis = undefined;
      const probe = connect(url);
      probe.on('error', () => undefined);
      await assert.rejects(probe.ping(), 'a stopped Redis must not answer');
      probe.disconnect();
    });
  });

  describe('processes', () => {
    let dir: string;
    before(() => {
      dir = tempDir('harness');
    });

    function script(name: string, body: string): string {
      const file = path.join(dir, name);
      fs.writeFileSync(file, body);
      return file;
    }

    it('spawnNode runs a script with the given env, and stop() SIGTERMs it', async () => {
      const file = script(
        'term.js',
        `process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
         console.log('ready ' + process.env.HARNESS_MARK);
         setInterval(() => {}, 1000);`,
      );
      const h = spawnNode('term', file, [], { HARNESS_MARK: 'm42' });
      assert.ok(h.pid > 0);
      await waitFor(() => h.tail().includes('ready m42'), { what: 'term to start' });
      await h.stop();
      const exit = await h.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, h.tail());
      assert.match(h.tail(), /got SIGTERM/);
      assert.equal(isAlive(h.pid), false);
    });

    it('stop() falls back to SIGKILL when SIGTERM is ignored', async () => {
      const file = script(
        'stubborn.js',
        `process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);`,
      );
      const h = spawnNode('stubborn', file, [], {});
      await waitFor(() => h.tail().includes('ready'), { what: 'stubborn to start' });
      const t0 = Date.now();
      await h.stop(300);
      assert.deepEqual(await h.exited, { code: null, signal: 'SIGKILL' });
      assert.ok(Date.now() - t0 < 5000);
    });

    it("kill('SIGKILL') yields signal SIGKILL", async () => {
      const file = script('idle.js', `console.log('ready'); setInterval(() => {}, 1000);`);
      const h = spawnNode('idle', file, [], {});
      await waitFor(() => h.tail().includes('ready'), { what: 'idle to start' });
      h.kill('SIGKILL');
      assert.deepEqual(await h.exited, { code: null, signal: 'SIGKILL' });
    });

    it('exited reports a non-zero exit code and tail() returns the last lines', async () => {
      const file = script('fail.js', `for (let i = 1; i <= 100; i++) console.log('line ' + i); process.exit(3);`);
      const h = spawnNode('fail', file, [], {});
      assert.deepEqual(await h.exited, { code: 3, signal: null });
      assert.equal(h.tail(2), 'line 99\nline 100');
    });
  });

  describe('waitFor', () => {
    it('returns the first truthy value', async () => {
      let n = 0;
      assert.equal(await waitFor(() => (++n >= 3 ? n : false), { what: 'three polls', intervalMs: 1 }), 3);
    });

    it('times out naming what it waited for and the last error', async () => {
      await assert.rejects(
        waitFor(
          () => {
            throw new Error('boom');
          },
          { what: 'the impossible', timeoutMs: 50, intervalMs: 10 },
        ),
        /^Error: timed out after 50ms waiting for the impossible; last error: boom$/,
      );
    });
  });
});
