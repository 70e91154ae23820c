import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import Redis from 'ioredis';
import * as fs from 'node:fs';
import { lossAndDuplicates, makeRows } from '../support/data';
import { spawnNode, startWorkerProcess, tempDir, type ChildHandle } from '../support/processes';
import { checkRedisTls } from '../../common/redis-tls';
import { freePort, sharedRedis, uniquePrefix } from '../support/redis';
import { startTlsRedis, type TlsRedis } from '../support/tls-redis';
import { waitFor } from '../support/wait';

describe('Redis over TLS (rediss:// and REDIS_TLS_CA_FILE)', function () {
  this.timeout(120_000);
  let redis: TlsRedis;
  const children: ChildHandle[] = [];
  const prefix = uniquePrefix();

  before(async () => {
    // A private TLS-only server: no plain port, so nothing below can pass over plain TCP.
    redis = await startTlsRedis();
  });

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await redis?.stop();
  });

  async function startCoordinator(
    name: string,
    env: Record<string, string>,
  ): Promise<{ child: ChildHandle; url: string }> {
    const port = await freePort();
    const child = spawnNode(name, 'dist/coordinator/main.js', [], {
      REDIS_URL: redis.url,
      DSTORE_PREFIX: prefix,
      DSTORE_PORT: String(port),
      DSTORE_REPLICAS: '1',
      DSTORE_WORKER_TIMEOUT_MS: '1500',
      LOG_FORMAT: 'json',
      ...env,
    });
    children.push(child);
    return { child, url: `http://127.0.0.1:${port}` };
  }

  function startWorker(id: string, env: Record<string, string>): ChildHandle {
    const child = startWorkerProcess({
      redisUrl: redis.url,
      prefix,
      id,
      dataDir: tempDir(`tls-${id}`),
      env: { DSTORE_HEARTBEAT_MS: '200', LOG_LEVEL: 'info', ...env },
    });
    children.push(child);
    return child;
  }

  it('the server speaks TLS only: a plain redis:// client gets no answer (control)', async () => {
    const plain = new Redis(redis.url.replace('rediss://', 'redis://'), {
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: 2000,
    });
    plain.on('error', () => undefined);
    await assert.rejects(async () => {
      await plain.connect();
      await plain.ping();
    });
    plain.disconnect();
  });

  it('a coordinator and a worker with the CA file ingest and read exactly', async () => {
    const env = { REDIS_TLS_CA_FILE: redis.caFile };
    startWorker('w1', env);
    const { child, url } = await startCoordinator('coordinator-tls', env);
    await waitFor(
      async () => {
        if (child.child.exitCode !== null) throw new Error(`coordinator exited:\n${child.tail(20)}`);
        const r = await fetch(`${url}/healthz`).catch(() => undefined);
        return r?.ok && ((await r.json()) as { liveWorkers: number }).liveWorkers === 1 ? true : undefined;
      },
      { what: 'the TLS coordinator with one live worker', timeoutMs: 30_000 },
    );
    const put = await fetch(`${url}/tables/tls`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ schema: 'n:integer,s:string' }),
    });
    assert.equal(put.status, 201, await put.text());
    const rows = makeRows(2000, 11).map((r, i) => ({ _id: r._id, n: i, s: `tls-${i}` }));
    const post = await fetch(`${url}/tables/tls/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: rows.map((r) => JSON.stringify(r)).join('\n'),
    });
    assert.equal(post.status, 200, await post.text());
    const res = await fetch(`${url}/tables/tls/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 200);
    const got = (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { _id: string; n: number; s: string });
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
    const byId = new Map(got.map((r) => [r._id, r]));
    for (const r of rows) assert.deepEqual(byId.get(r._id), r);
  });

  it('checkRedisTls names REDIS_URL for a plain server behind rediss://, and passes the good CA and an unreachable port', async () => {
    const plain = new URL((await sharedRedis()).url);
    await assert.rejects(
      checkRedisTls({ redisUrl: `rediss://${plain.host}` }, 1500),
      /REDIS_URL: is rediss:\/\/ but the server at .* did not complete a TLS handshake/,
    );
    await checkRedisTls({ redisUrl: redis.url, redisTlsCa: fs.readFileSync(redis.caFile, 'utf8') });
    // Nothing listening: not a TLS problem; the process waits for Redis as before.
    await checkRedisTls({ redisUrl: `rediss://127.0.0.1:${await freePort()}` });
  });

  for (const [label, env, re] of [
    [
      'without REDIS_TLS_CA_FILE',
      {},
      /REDIS_URL: the TLS certificate of the Redis at 127\.0\.0\.1:\d+ is not trusted by the system CAs \(SELF_SIGNED_CERT_IN_CHAIN.*set REDIS_TLS_CA_FILE/,
    ],
    [
      'with the CA file of another CA',
      { otherCa: '1' },
      /REDIS_TLS_CA_FILE: does not verify the TLS certificate of the Redis at 127\.0\.0\.1:\d+ .*give the PEM of the CA that signed/,
    ],
  ] as const) {
    it(`${label}, a worker and a coordinator exit 1 with one line naming the setting`, async () => {
      const e: Record<string, string> =
        'otherCa' in env ? { REDIS_TLS_CA_FILE: redis.otherCaFile } : { REDIS_TLS_CA_FILE: '' };
      const procs = [
        startWorker(`w-bad-${children.length}`, e),
        (await startCoordinator(`coordinator-bad-${children.length}`, e)).child,
      ];
      for (const p of procs) {
        const exit = await p.exited;
        assert.equal(exit.code, 1, p.tail(20));
        const lines = fs.readFileSync(p.logFile, 'utf8').split('\n');
        const line = lines.find((l) => l.startsWith('dstore '));
        assert.ok(line, `no "dstore …:" line in:\n${p.tail(20)}`);
        assert.match(line, re);
      }
    });
  }
});
